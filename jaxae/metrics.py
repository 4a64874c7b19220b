"""Host-side metric records: `metrics.jsonl`, one JSON object per epoch and split."""

import json
from pathlib import Path


def read(path: str | Path) -> list[dict]:
  """All records in a metrics.jsonl file (an empty list if it does not exist)."""
  path = Path(path)
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      break  # a line cut short by a crash: it and anything after it are dropped
  return records


class MetricsLog:
  """Appends records to `metrics.jsonl`, first keeping only the epochs up to `keep_through`.

  On resume, `keep_through` is the last epoch completed before the checkpoint
  (its records were written before that checkpoint); later records are dropped,
  and -1 starts afresh, so no epoch is ever logged twice or left out.
  With `path` None (processes other than 0) the records are kept in memory only.
  """

  def __init__(self, path: str | Path | None, keep_through: int):
    self.path = None if path is None else Path(path)
    self.records = []
    if self.path is not None:
      self.records = [r for r in read(self.path) if r['epoch'] <= keep_through]
      tmp = self.path.with_suffix('.jsonl.tmp')
      tmp.write_text(''.join(json.dumps(r) + '\n' for r in self.records))
      tmp.replace(self.path)

  def write(self, record: dict) -> None:
    if self.path is not None:
      with self.path.open('a') as f:
        f.write(json.dumps(record) + '\n')
    self.records.append(record)


def means(sums: dict) -> dict:
  """Per-example means from device sums with a 'count' entry: `{k: sums[k] / count}`."""
  count = float(sums['count'])
  return {k: float(v) / count for k, v in sums.items() if k != 'count'}
