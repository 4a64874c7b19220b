"""The documentation is checked like code: the site builds with warnings as errors, its internal links and
anchors resolve, every public name is in the API reference, every result file names its provenance, and every
Python block of the README and the docs runs."""

import html.parser
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import jaxae
from jaxae import evaluation, models, results

ROOT = Path(__file__).resolve().parents[1]


def _pages() -> list[Path]:
  """The hand-written pages: the README, CONTRIBUTING and docs/ but what the build generates."""
  docs = ROOT / 'docs'
  found = [p for p in docs.rglob('*.md') if not set(p.relative_to(docs).parts) & {'_build', '_generated',
                                                                                   '_autosummary'}]
  found = [p for p in found if p.parent != docs / 'results' or p.name == 'index.md']  # the others: generated
  return [ROOT / 'README.md', ROOT / 'CONTRIBUTING.md', *sorted(found)]


PAGES = _pages()
SKIP = re.compile(r'^# skip: (.+)$', re.M)  # a block's first line `# skip: reason` (needs MNIST, a GPU...)


class _Links(html.parser.HTMLParser):
  """The ids, and the href/src targets, of one HTML page."""

  def __init__(self):
    super().__init__()
    self.ids, self.targets = set(), []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if 'id' in attrs:
      self.ids.add(attrs['id'])
    for name in ('href', 'src'):
      if attrs.get(name):
        self.targets.append(attrs[name])


def _parse(path: Path) -> _Links:
  links = _Links()
  links.feed(path.read_text(errors='replace'))
  return links


def broken_links(site: Path) -> list[str]:
  """`page -> target` for every internal link of the built site whose file or anchor does not exist."""
  pages = {p: _parse(p) for p in site.rglob('*.html') if p.relative_to(site).parts[0] not in ('_static', '_sources')}
  broken = []
  for page, links in pages.items():
    for target in links.targets:
      url = urlsplit(target)
      if url.scheme or url.netloc or target.startswith(('mailto:', 'javascript:', 'data:')):
        continue
      path = (page.parent / unquote(url.path)).resolve() if url.path else page
      if path.is_dir():
        path = path / 'index.html'
      if not path.exists():
        broken.append(f'{page.relative_to(site)} -> {target}')
      elif url.fragment and path.suffix == '.html' and url.fragment not in (pages.get(path) or _parse(path)).ids:
        broken.append(f'{page.relative_to(site)} -> {target} (no such anchor)')
  return broken


def public_names() -> set[str]:
  """The full names the API reference must hold: `jaxae.__all__`, and every function and class a family or a
  suite defines (presets' re-exports under their home module)."""
  names = set()
  for name in jaxae.__all__:
    obj = getattr(jaxae, name)
    names.add(obj.__name__ if inspect.ismodule(obj) else f'{obj.__module__}.{obj.__qualname__}')
  modules = [models.get(n) for n in models.names()] + [evaluation.get(n) for n in evaluation.names()]
  for module in modules:
    for name, obj in vars(module).items():
      if not name.startswith('_') and (inspect.isfunction(obj) or inspect.isclass(obj)):
        home = importlib.import_module(obj.__module__)
        if home.__name__.startswith('jaxae.') and getattr(home, obj.__qualname__, None) is obj:
          names.add(f'{obj.__module__}.{obj.__qualname__}')
    names.add(module.__name__)
  return names


@pytest.fixture(scope='module')
def site(tmp_path_factory):
  out = tmp_path_factory.mktemp('site')
  proc = subprocess.run([sys.executable, '-m', 'sphinx', '-E', '-W', '--keep-going', '-q', '-b', 'html',
                         str(ROOT / 'docs'), str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return out


def test_the_site_builds_with_warnings_as_errors_and_its_internal_links_resolve(site):
  from docutils.nodes import make_id
  from sphinx.util.inventory import InventoryFile

  assert broken_links(site) == []
  with open(site / 'objects.inv', 'rb') as f:
    inventory = InventoryFile.load(f, '', lambda *parts: '/'.join(parts))
  entries = getattr(inventory, 'data', inventory)  # Sphinx 9 returns the mapping itself
  documented = {name for kind, names in entries.items() if kind.startswith('py:') for name in names}
  assert sorted(public_names() - documented) == []
  for page in ('settings', 'results/quality', 'results/speed', 'families/gans', 'notebooks/03_vae', 'api/index'):
    assert (site / f'{page}.html').is_file(), page
  settings = (site / 'settings.html').read_text()
  assert all(f'id="{make_id(f"settings-{name}")}"' in settings for name in models.names())  # every family's
  assert 'one-sided label smoothing' in settings  # what `--set real_label=0.9` does, from the code's text
  assert 'commit <code class="docutils literal notranslate"><span class="pre">32a80b9' in (
      site / 'results' / 'quality.html').read_text()  # a table names the commit that measured it


@pytest.mark.parametrize('path', sorted((ROOT / 'results').glob('*.json')), ids=lambda p: p.name)
def test_every_result_file_names_its_machine_versions_commit_and_command(path):
  result = results.read(path)
  assert result['machine']['cpu'] and result['machine']['cores'] > 0 and result['versions']['jax']
  assert re.fullmatch(r'\d{4}-\d\d-\d\d', result['date']) and result['command'].startswith('python ')
  commit = result['commit'].removesuffix('+changes')
  known = subprocess.run(['git', 'cat-file', '-e', f'{commit}^{{commit}}'], cwd=ROOT, capture_output=True)
  if known.returncode != 0 and (ROOT / '.git' / 'shallow').exists():
    pytest.skip('a shallow clone: the commit may be older than its history')
  assert known.returncode == 0, f'{path.name} names commit {commit}, which this repository does not have'
  table = results.render(result)
  assert table.count('\n| ') == len(result['rows']) + 1 and result['command'] in table


def test_the_readme_is_a_front_page_and_no_page_reads_as_a_diary():
  readme = (ROOT / 'README.md').read_text()
  assert len(readme.splitlines()) <= 150
  for path in PAGES:
    text = path.read_text()
    assert not re.search(r'\b(session|stop) \d+|\bthe issue\b|\bissue #?\d+|20\d\d-\d\d-\d\d', text, re.I), path


@pytest.fixture(scope='module')
def runs_folder(tmp_path_factory):
  """A folder holding what the pages' blocks read: runs/vae-digits (the README's first command, one epoch) and
  its export."""
  folder = tmp_path_factory.mktemp('pages')
  jaxae.train_and_evaluate({'model': 'vae', 'epochs': 1}, folder / 'runs' / 'vae-digits', progress=False)
  jaxae.export(folder / 'runs' / 'vae-digits', folder / 'exported' / 'vae-digits')
  return folder


def python_blocks(path):
  return re.findall(r'```python\n(.*?)```', path.read_text(), re.S)


@pytest.mark.parametrize('path', [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_of_the_readme_and_the_docs_runs(path, runs_folder, monkeypatch):
  """A page's blocks run in order in one namespace, in a folder with the run the README trains; a block whose
  first line is `# skip: reason` is skipped (it needs MNIST or an accelerator)."""
  blocks = python_blocks(path)
  monkeypatch.chdir(runs_folder)
  scope = {}
  for i, block in enumerate(blocks):
    if not SKIP.match(block):
      exec(compile(block, f'{path.name} block {i}', 'exec'), scope)  # noqa: S102
