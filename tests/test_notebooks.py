"""Every notebook's code cells run top to bottom (so the notebooks cannot rot)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / 'notebooks').glob('*.ipynb'))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
  cells = json.loads(path.read_text())['cells']
  namespace = {}
  for cell in cells:
    if cell['cell_type'] == 'code':
      exec(compile(''.join(cell['source']), f'{path.name}', 'exec'), namespace)  # noqa: S102


def test_there_is_a_notebook():
  assert NOTEBOOKS
