"""Pages generated when the documentation is built, from the code and the committed files, never by hand:

- `_generated/settings/base.md` and `families.md`: the settings every family has, and each family's own, with
  defaults and meanings, from `jaxae.config.describe` (the text of `jaxae-train --list-config MODEL`);
- `_generated/results/<name>.md` and `results/<page>.md`: every result file in `results/*.json`, rendered by
  `jaxae.results` (the results pages, and the tables the family pages include);
- `notebooks/*.ipynb`: the tour's notebooks as they are committed, with their stored outputs (not executed
  again: the test suite runs them).

A file is rewritten only when its text changes, so an incremental build reads only what changed.
"""

import shutil
from pathlib import Path

FAMILY_ONLY = ('model',)  # base keys a family table leaves out


def _write(path: Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def _cell(value) -> str:
  if isinstance(value, tuple):
    value = ','.join(map(str, value)) or '(empty)'
  return f'`{value}`'.replace('|', '\\|')


def settings_tables(out: Path) -> None:
  """`base.md`: the settings every family has; `families.md`: a section per family, the settings it adds or
  sets otherwise (a target `settings-<family>` each)."""
  from jaxae import config, models

  base = dict(config.BASE)
  rows = lambda keys: ['| setting | default | meaning |', '|---|---|---|'] + [
      f'| `{k}` | {_cell(v)} | {meaning.replace("|", chr(92) + "|")} |' for k, v, meaning in keys]
  sections = []
  for name in models.names():
    own = [(k, v, m) for k, v, m in config.describe(name)
           if k not in FAMILY_ONLY and (k not in base or base[k] != v)]
    sections += [f'(settings-{name})=', f'### {name}', '', *rows(own), '']
  _write(out / 'families.md', '\n'.join(sections))
  first = models.names()[0]
  common = [(k, base[k], m) for k, _, m in config.describe(first) if k in base]
  _write(out / 'base.md', '\n'.join(rows(common)) + '\n')


def result_pages(root: Path, docs: Path) -> None:
  """One snippet per result file, and one page per results page (`jaxae.results.PAGES`)."""
  from jaxae import results

  found = {path.stem: results.read(path) for path in sorted((root / 'results').glob('*.json'))}
  for name, result in found.items():
    _write(docs / '_generated' / 'results' / f'{name}.md', results.render(result, heading='###'))
  for page, title in results.PAGES.items():
    mine = [r for r in found.values() if r['page'] == page]
    _write(docs / 'results' / f'{page}.md', results.page(mine, title))


def notebooks(root: Path, docs: Path) -> None:
  for path in sorted((root / 'notebooks').glob('*.ipynb')):
    target = docs / 'notebooks' / path.name
    if not target.exists() or target.read_bytes() != path.read_bytes():
      target.parent.mkdir(exist_ok=True)
      shutil.copyfile(path, target)


def generate(app) -> None:
  docs = Path(app.srcdir)
  root = docs.parent
  settings_tables(docs / '_generated' / 'settings')
  result_pages(root, docs)
  notebooks(root, docs)


def clear_stubs(app, config) -> None:
  """The API stubs of the last build go first: autosummary writes new ones but never removes one whose module
  is gone or documented elsewhere."""
  shutil.rmtree(Path(app.srcdir) / 'api' / '_autosummary', ignore_errors=True)


def setup(app):
  app.connect('config-inited', clear_stubs)
  app.connect('builder-inited', generate)
  return {'parallel_read_safe': True, 'parallel_write_safe': True}
