"""Result files: measured numbers as data, each saying when, where, with which code and by which command it was
measured. The documentation's results pages are rendered from them (`render`), never typed by hand.

A result file (`results/<name>.json`, format `jaxae-result-1`) holds one table:

    title, page       the table's title, and the results page it belongs on (`PAGES`)
    summary           what was measured, on which data, how (Markdown)
    command           the command that reproduces it
    date, commit      when, and the commit of the code that measured it
    machine           CPU model, cores, its matmul-relevant features, the accelerator (if any), matmul peaks
    versions          python, jax, jaxlib, flax, optax (and any other package that took part)
    columns, rows     `[{'key', 'label', 'format'}]` and `[{key: value}]` (a value: number, text or None)
    notes             what the numbers mean (Markdown; optional)

`scripts/benchmark.py`, `scripts/results.py` and `scripts/evaluate.py` write them with `--result FILE`;
`make` fills in the provenance of the machine and code it runs on.
"""

import datetime
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from jaxae.errors import UserError, require

FORMAT = 'jaxae-result-1'
PAGES = {'quality': 'Sample quality', 'likelihood': 'Likelihoods', 'representation': 'Codes and applications',
         'autoencoders': 'Autoencoders: reconstruction', 'speed': 'Speed'}
FIELDS = ('format', 'title', 'page', 'summary', 'command', 'date', 'commit', 'machine', 'versions', 'columns',
          'rows')
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy')
CODE = ('jaxae', 'scripts', 'pyproject.toml')  # what computes a result (not the docs, the tests or results/)


def cpu_model() -> str:
  """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
  try:
    with open('/proc/cpuinfo') as f:
      return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
  """The matmul-relevant features the CPU reports: AVX2, AVX-512 (F, BF16, FP16) and AMX, from /proc/cpuinfo."""
  try:
    with open('/proc/cpuinfo') as f:
      flags = set(next(line for line in f if line.startswith('flags')).split(':', 1)[1].split())
  except (OSError, StopIteration):
    return []
  return [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile') if f in flags]


def machine(matmul_peaks: dict[str, float] | None = None) -> dict:
  """This machine: CPU, cores, features, the accelerator JAX uses (None on a CPU), and `matmul_peaks` (GFLOP/s
  by precision, measured in the same run) when given."""
  import jax

  device = jax.devices()[0]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return {'cpu': cpu_model(), 'cores': cores, 'cpu_features': cpu_features(),
          'accelerator': None if device.platform == 'cpu' else f'{device.device_kind} x{jax.device_count()}',
          'matmul_peak_gflop_per_s': matmul_peaks or {}}


def versions(*extra: str) -> dict:
  """Installed versions of Python, JAX and its libraries (and of the packages `extra` names)."""
  found = {'python': platform.python_version()}
  for name in (*PACKAGES, *extra):
    try:
      found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return found


def commit(root: str | Path | None = None) -> str:
  """The git commit of the code in `root` (default: jaxae's source tree), short, with '+changes' when the code
  that measures (`CODE`) differs from it; 'unknown' outside a git checkout."""
  root = Path(root or Path(__file__).resolve().parents[1])
  try:
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', *CODE], cwd=root,
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return 'unknown'
  return head + ('+changes' if dirty else '')


def make(title: str, page: str, summary: str, command: str, columns: list[dict], rows: list[dict], *,
         notes: str = '', matmul_peaks: dict[str, float] | None = None, packages: tuple[str, ...] = ()) -> dict:
  """A result measured just now by this process: the table and its provenance (date, commit, machine,
  versions). `columns`: `{'key', 'label', 'format'}` (a format spec such as '.3f'; optional)."""
  result = {'format': FORMAT, 'title': title, 'page': page, 'summary': summary, 'command': command,
            'date': datetime.date.today().isoformat(), 'commit': commit(), 'machine': machine(matmul_peaks),
            'versions': versions(*packages), 'columns': columns, 'rows': rows, 'notes': notes}
  check(result, f'result {title!r}')
  return result


def write(path: str | Path, result: dict) -> None:
  """`result` as JSON at `path`, atomically."""
  path = Path(path)
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + '\n')
  tmp.replace(path)


def read(path: str | Path) -> dict:
  """The result file at `path`, checked (`UserError` naming what is missing or wrong)."""
  try:
    result = json.loads(Path(path).read_text())
  except (OSError, ValueError) as e:
    raise UserError(f'{path} is not a readable result file ({e})') from None
  check(result, str(path))
  return result


def check(result: dict, what: str) -> None:
  """`UserError` unless `result` has every field, a known page, and rows whose keys are its columns'."""
  missing = [f for f in FIELDS if f not in result]
  require(not missing, f"{what} lacks {', '.join(missing)}: write it with jaxae.results.make")
  require(result['format'] == FORMAT, f"{what}: format {result['format']!r}, expected {FORMAT!r}")
  require(result['page'] in PAGES, f"{what}: page {result['page']!r} is not one of {', '.join(PAGES)}")
  keys = [c['key'] for c in result['columns']]
  for row in result['rows']:
    odd = set(row) - set(keys)
    require(not odd, f"{what}: a row has {', '.join(sorted(odd))}, which no column names")
  require(result['machine'].get('cpu') and result['date'] and result['commit'], f'{what}: machine, date and '
          'commit must be named')


def cell(value, fmt: str | None) -> str:
  """One table cell: '' for None, numbers with `fmt` (thousands separated by default), text as it is."""
  if value is None:
    return ''
  if isinstance(value, bool) or not isinstance(value, int | float):
    return str(value).replace('|', '\\|')
  return format(value, fmt or (',' if isinstance(value, int) else ',.4g'))


def render(result: dict, heading: str = '##') -> str:
  """The result as Markdown: title, summary, the table, where and how it was measured, notes."""
  cols = result['columns']
  lines = [f"{heading} {result['title']}", '', result['summary'], '',
           '| ' + ' | '.join(c['label'] for c in cols) + ' |', '|' + '---|' * len(cols)]
  lines += ['| ' + ' | '.join(cell(row.get(c['key']), c.get('format')) for c in cols) + ' |'
            for row in result['rows']]
  m = result['machine']
  where = f"{m['accelerator']} on a host with " if m.get('accelerator') else ''
  where += f"{m['cpu']}, {m['cores']} cores" + (f" ({', '.join(m['cpu_features'])})" if m['cpu_features'] else '')
  peaks = ', '.join(f'{k} {v:.0f}' for k, v in m.get('matmul_peak_gflop_per_s', {}).items())
  where += f'; matmul peak {peaks} GFLOP/s' if peaks else ''
  used = ', '.join(f'{k} {v}' for k, v in result['versions'].items())
  lines += ['', f"*Measured {result['date']} on {where}; {used}; commit `{result['commit']}`.*", '',
            '```bash', result['command'], '```']
  if result.get('notes'):
    lines += ['', result['notes']]
  return '\n'.join(lines) + '\n'


def page(results: list[dict], title: str) -> str:
  """A results page: `title`, then every result in `results` (ordered by their `order`, then title)."""
  ordered = sorted(results, key=lambda r: (r.get('order', 100), r['title']))
  return f'# {title}\n\n' + '\n'.join(render(r) for r in ordered)
