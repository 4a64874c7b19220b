"""Executes the notebooks in a Jupyter kernel and reports each one's run time; `--write` stores the outputs.

    pip install -e '.[notebooks]'
    python scripts/run_notebooks.py                  # every notebook, default setting, outputs not kept
    python scripts/run_notebooks.py --write          # ... and store the outputs (the repository's policy)
    python scripts/run_notebooks.py 03_vae --run mnist

The outputs policy: stored outputs come from the default setting (`RUN = 'digits'`), hold text and PNG figures
only, and stay under `MAX_BYTES` per notebook (tests/test_notebooks.py checks it). The tests execute the code
cells without a kernel under `RUN = 'smoke'`.
"""

import argparse
import re
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / 'notebooks'
MAX_BYTES = 600_000


PARAMETER = re.compile(r"^RUN = '[a-z]+'", re.M)


def with_run(source: str, run: str) -> str:
  """The parameter cell's `source` (`RUN = '...'  # comment`) set to `run`; ValueError if it is no such cell."""
  if not PARAMETER.match(source):
    raise ValueError(f"not a parameter cell (RUN = '...'): {source[:60]!r}")
  return PARAMETER.sub(f'RUN = {run!r}', source, count=1)


def execute(path: Path, run: str, write: bool) -> tuple[float, int]:
  """Runs `path` top to bottom; returns `(seconds, bytes of the executed notebook)`."""
  import nbformat
  from nbclient import NotebookClient

  nb = nbformat.read(path, as_version=4)
  cell = next(c for c in nb.cells if c.cell_type == 'code')
  cell.source = with_run(cell.source, run)
  t0 = time.perf_counter()
  NotebookClient(nb, timeout=1800, kernel_name='python3', record_timing=False,
                 resources={'metadata': {'path': str(path.parent)}}).execute()
  seconds = time.perf_counter() - t0
  text = nbformat.writes(nb)
  if write:
    path.write_text(text)
  return seconds, len(text.encode())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('names', nargs='*', help='notebook names (default: all), with or without .ipynb')
  parser.add_argument('--run', default='digits', choices=('smoke', 'digits', 'mnist'), help='the RUN setting')
  parser.add_argument('--write', action='store_true', help="store the outputs (only with --run digits)")
  args = parser.parse_args()
  if args.write and args.run != 'digits':
    parser.error("--write stores the default setting's outputs only: drop --run or use --run digits")
  paths = [NOTEBOOKS / (n if n.endswith('.ipynb') else f'{n}.ipynb') for n in args.names] or sorted(
      NOTEBOOKS.glob('*.ipynb'))
  missing = [str(p) for p in paths if not p.exists()]
  if missing:
    parser.error(f"no such notebook: {', '.join(missing)}")
  for path in paths:
    seconds, size = execute(path, args.run, args.write)
    flag = '' if size <= MAX_BYTES else f'  over the {MAX_BYTES // 1000} kB policy'
    print(f'{path.name:34s} {seconds:7.1f} s  {size / 1000:7.0f} kB{flag}', flush=True)


if __name__ == '__main__':
  main()
