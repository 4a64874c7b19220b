"""Every notebook runs top to bottom in its smoke setting, and follows the one outputs policy (the documentation
shows the stored outputs; tests/test_docs.py runs the README's and the docs' code blocks).

The code cells run in this process (no Jupyter kernel) with the parameter cell set to `RUN = 'smoke'`;
IPython magics (`%matplotlib inline`) are dropped. `scripts/run_notebooks.py` runs them in a kernel.
"""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'notebooks').glob('*.ipynb'))
TOUR = [f'0{i}_' for i in range(1, 8)]

spec = importlib.util.spec_from_file_location('run_notebooks', ROOT / 'scripts' / 'run_notebooks.py')
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)


def code_cells(path: Path) -> list[dict]:
  return [c for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'code']


def python(source: str) -> str:
  return '\n'.join('pass' if line.startswith('%') else line for line in source.splitlines())


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_its_smoke_setting(path, tmp_path, monkeypatch):
  monkeypatch.setattr('tempfile.tempdir', str(tmp_path))  # the runs' workdirs
  cells = code_cells(path)
  namespace = {}
  for i, cell in enumerate(cells):
    source = ''.join(cell['source'])
    if i == 0:
      source = run_notebooks.with_run(source, 'smoke')
    exec(compile(python(source), f'{path.name} cell {i}', 'exec'), namespace)  # noqa: S102
  assert namespace['RUN'] == 'smoke'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_outputs_policy(path):
  """A tagged parameter cell first, set to the default; stored outputs only text and PNG, without errors, from
  one run in order, and small."""
  cells = code_cells(path)
  first = cells[0]
  assert 'parameters' in first.get('metadata', {}).get('tags', []), 'the first code cell is the parameter cell'
  assert ''.join(first['source']).startswith("RUN = 'digits'"), 'the stored notebook keeps the default setting'
  counts = [c['execution_count'] for c in cells]
  assert counts in ([None] * len(cells), list(range(1, len(cells) + 1))), 'outputs of one run, top to bottom'
  for cell in cells:
    for out in cell['outputs']:
      assert out['output_type'] in ('stream', 'execute_result', 'display_data'), out['output_type']
      assert out.get('name') != 'stderr', ''.join(out.get('text', ''))[:300]
      assert set(out.get('data', {})) <= {'text/plain', 'image/png'}, set(out['data'])
  assert path.stat().st_size <= run_notebooks.MAX_BYTES


def test_the_tour_is_there_and_the_readme_links_each_notebook():
  names = [p.name for p in NOTEBOOKS]
  assert all(any(n.startswith(prefix) for n in names) for prefix in TOUR), names
  readme = (ROOT / 'README.md').read_text()
  assert all(f'notebooks/{n}' in readme for n in names), 'one README line per notebook'


def test_the_parameter_cell_is_rewritten_and_checked():
  assert run_notebooks.with_run("RUN = 'digits'  # setting", 'smoke') == "RUN = 'smoke'  # setting"
  with pytest.raises(ValueError, match='not a parameter cell'):
    run_notebooks.with_run('import jax', 'smoke')


def test_the_run_setting_picks_values_and_data(monkeypatch):
  from jaxae import UserError, tour

  assert tour.pick('smoke', smoke=2, digits=50, mnist=10) == 2
  assert tour.data('digits') == {'dataset': 'digits'}
  monkeypatch.delenv(tour.MNIST_DIR, raising=False)
  assert tour.data('mnist') == {'dataset': 'mnist'}
  monkeypatch.setenv(tour.MNIST_DIR, '/data/mnist')
  assert tour.data('mnist') == {'dataset': 'idx', 'data_dir': '/data/mnist', 'holdout': 1000, 'holdout_order': 'tail'}
  with pytest.raises(UserError, match="RUN = 'fast' is not a setting"):
    tour.pick('fast', smoke=1, digits=2, mnist=3)


def test_smoke_trains_narrow_networks_where_the_notebook_does_not_set_them(monkeypatch):
  from jaxae import tour

  seen = []
  monkeypatch.setattr(tour, 'train_and_evaluate', lambda config, workdir, progress: seen.append(config))
  monkeypatch.setattr(tour, 'load', lambda workdir: None)
  tour.train('smoke', {'model': 'ssaae', 'hidden': (16,)})
  tour.train('smoke', {'model': 'vae'})
  tour.train('digits', {'model': 'vae'})
  assert seen[0] == {'dataset': 'digits', 'model': 'ssaae', 'hidden': (16,), 'disc_hidden': (64, 32),
                     'conv_features': (8, 16)}
  assert seen[1] == {'dataset': 'digits', 'model': 'vae', 'hidden': (64, 32), 'conv_features': (8, 16)}
  assert seen[2] == {'dataset': 'digits', 'model': 'vae'}  # the notebooks' own settings train the defaults
