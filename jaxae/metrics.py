"""Host-side metric records: `metrics.jsonl`, one JSON object per epoch and split, and a run header per start.

A header line, `{"run": {...}}`, opens each start of a run (the first and every
resume): where and how it computed (backend, devices, matmul precision, PRNG
implementation, versions). `read` returns the records, `headers` the headers.

Evaluation metrics are sums over the held-out batches with a 'count'; `means` turns them into per-example means,
and the active-unit moments (`unit_moments`, array sums named `active_units<i>`) into a count of active units.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ACTIVE_UNITS = 'active_units'  # the name prefix of active-unit moment sums
ACTIVE_THRESHOLD = 0.01  # Burda et al. 2016, Sec. 5.2: a unit is active if Cov_x(E_q[z_u]) > 0.01


def _lines(path: Path) -> list[dict]:
  """Every JSON line of `path` (none if it does not exist), up to a line cut short by a crash."""
  lines = []
  for line in path.read_text().splitlines() if path.exists() else ():
    try:
      lines.append(json.loads(line))
    except json.JSONDecodeError:
      break  # a line cut short by a crash: it and anything after it are dropped
  return lines


def read(path: str | Path) -> list[dict]:
  """All epoch records in a metrics.jsonl file (an empty list if it does not exist)."""
  return [r for r in _lines(Path(path)) if 'run' not in r]


def headers(path: str | Path) -> list[dict]:
  """The run headers in a metrics.jsonl file, one per start of the run, oldest first."""
  return [r['run'] for r in _lines(Path(path)) if 'run' in r]


class MetricsLog:
  """Appends records to `metrics.jsonl`, first keeping only the epochs up to `keep_through`; `header` goes in
  with the first record (a start that fails before it leaves the file as it was).

  On resume, `keep_through` is the last epoch completed before the checkpoint
  (its records were written before that checkpoint); later records are dropped,
  and -1 starts afresh, so no epoch is ever logged twice or left out. Earlier
  starts' headers are kept. With `path` None (processes other than 0) the
  records are kept in memory only.
  """

  def __init__(self, path: str | Path | None, keep_through: int, header: dict | None = None):
    self.path = None if path is None else Path(path)
    self.records, self.header = [], header
    if self.path is not None:
      kept = [r for r in _lines(self.path) if r.get('epoch', -1) <= keep_through and keep_through >= 0]
      self.records = [r for r in kept if 'run' not in r]
      tmp = self.path.with_suffix('.jsonl.tmp')
      tmp.write_text(''.join(json.dumps(r) + '\n' for r in kept))
      tmp.replace(self.path)

  def write(self, record: dict) -> None:
    if self.path is not None:
      header = [{'run': self.header}] if self.header is not None else []
      with self.path.open('a') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in [*header, record]))
    self.records.append(record)
    self.header = None


def truncate_after(path: str | Path, step: int) -> None:
  """Cuts `metrics.jsonl` in place before its first epoch record past `step` (and the run header just before it),
  needing no free space: after a failed checkpoint, the file ends where the run's saved state does. Best effort:
  an unreadable or unwritable file is left as it is (the next start drops those records anyway)."""
  path = Path(path)
  try:
    with path.open('rb+') as f:
      offset, header = 0, None
      for line in f:
        record = json.loads(line) if line.strip() else {}
        if 'run' in record:
          header = offset
        elif record.get('step', -1) > step:
          f.truncate(header if header is not None else offset)
          return
        else:
          header = None
        offset += len(line)
  except (OSError, ValueError):
    pass


def unit_moments(codes: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """`[2, d]`: the sums over the (unmasked) examples of posterior means `codes: [B, d]` and of their squares; summed
  over batches and given to `means` under a name starting with `ACTIVE_UNITS`, they become the number of active
  units (`active_units`)."""
  weight = jnp.ones(codes.shape[:1], codes.dtype) if mask is None else mask.astype(codes.dtype)
  return jnp.stack([weight @ codes, weight @ jnp.square(codes)])


def active_units(moments, count: float, threshold: float = ACTIVE_THRESHOLD) -> int:
  """The units whose posterior mean varies over the examples, Var_x(E_q[z_u]) > `threshold` (Burda et al. 2016),
  from `unit_moments` summed over `count` examples."""
  mean, mean_square = np.asarray(moments, np.float64) / count
  return int(np.sum(mean_square - np.square(mean) > threshold))


def means(sums: dict) -> dict:
  """Per-example means from device sums with a 'count' entry: `{k: sums[k] / count}`; active-unit moments
  (`ACTIVE_UNITS`...) become their count of active units."""
  count = float(sums['count'])
  return {k: active_units(v, count) if k.startswith(ACTIVE_UNITS) else float(v) / count
          for k, v in sums.items() if k != 'count'}
