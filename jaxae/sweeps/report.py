"""What a sweep leaves beside its members: `sweep.json`, a table (`sweep.md`) and figures of each held-out
metric against each swept hyperparameter (mean over seeds, their standard deviation as error bars), and for
a family with a rate and a distortion (the VAE's `kl` and `rec`) the rate–distortion plane."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxae import config as config_lib

SWEEP_FILE = 'sweep.json'


def read(folder: Path) -> dict | None:
  """The sweep.json in `folder`, or None."""
  path = Path(folder) / SWEEP_FILE
  return json.loads(path.read_text()) if path.exists() else None


def member_folders(paths: Sequence[str | Path]) -> list[Path]:
  """`paths` with each sweep folder (one holding sweep.json) replaced by its members' run folders, in order."""
  out = []
  for path in map(Path, paths):
    saved = read(path)
    out += [path / 'members' / name for name in saved['names']] if saved else [path]
  return out


def write(folder: Path, record: Mapping) -> None:
  """Writes sweep.json atomically."""
  path = Path(folder) / SWEEP_FILE
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(config_lib.to_json(dict(record)))
  tmp.replace(path)


def row(name: str, overrides: Mapping, status: Mapping, records: Sequence[Mapping]) -> dict:
  """A member's line of the sweep: its overrides, status and last held-out metrics."""
  evals = [r for r in records if r.get('split') == 'eval']
  last = evals[-1] if evals else {}
  held_out = {k: v for k, v in last.items() if k not in ('epoch', 'split', 'step')}
  return {'name': name, 'overrides': dict(overrides), **{k: v for k, v in status.items() if k not in ('best',
          'since_best')}, 'eval_epoch': last.get('epoch'), 'eval': held_out}


def describe(status: Mapping) -> str:
  if status['status'] == 'failed':
    return f"failed: non-finite {status['term']} at step {status['step']}"
  if status['status'] == 'stopped':
    return f"stopped early after epoch {status['epoch']}"
  return status['status']


def table(rows: Sequence[Mapping], metrics: Sequence[str]) -> str:
  """A Markdown table, one row per member: its overrides, its held-out `metrics`, its status."""
  keys = sorted({k for r in rows for k in r['overrides']})
  head = ['member', *keys, *(f'eval {m}' for m in metrics), 'status']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    values = [f"{r['eval'][m]:.4f}" if m in r['eval'] else '' for m in metrics]
    lines.append('| ' + ' | '.join([r['name'], *(str(r['overrides'].get(k, '')) for k in keys), *values,
                                    describe(r)]) + ' |')
  return '\n'.join(lines) + '\n'


def curves(rows: Sequence[Mapping], key: str, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(values of key, mean of metric, its standard deviation)` over the members of each value (the seeds), for
  the members with that metric."""
  by_value: dict[float, list[float]] = {}
  for r in rows:
    if key in r['overrides'] and metric in r['eval']:
      by_value.setdefault(float(r['overrides'][key]), []).append(float(r['eval'][metric]))
  xs = np.array(sorted(by_value))
  return xs, np.array([np.mean(by_value[x]) for x in xs]), np.array([np.std(by_value[x]) for x in xs])


def figures(folder: Path, rows: Sequence[Mapping], swept: Sequence[str], metrics: Sequence[str]) -> list[Path]:
  """figures/<metric>_vs_<key>.png for each swept numeric key but the seed, and rate_distortion.png where the
  members report `kl` and `rec`; returns the files written."""
  import matplotlib.pyplot as plt

  out, written = Path(folder) / 'figures', []
  out.mkdir(exist_ok=True)
  for key in [k for k in swept if k != 'seed' and _numeric(rows, k)]:
    for metric in metrics:
      xs, mean, std = curves(rows, key, metric)
      if len(xs) == 0:
        continue
      fig, ax = plt.subplots(figsize=(4.5, 3.2))
      ax.errorbar(xs, mean, yerr=std, marker='o', capsize=3)
      ax.set(xlabel=key, ylabel=f'held-out {metric}', xscale='log' if xs.min() > 0 and xs.max() / xs.min() > 20
             else 'linear')
      written.append(_save(fig, out / f'{metric}_vs_{key}.png'))
  if all({'kl', 'rec'} <= set(r['eval']) for r in rows) and rows:
    written.append(_rate_distortion(rows, [k for k in swept if k != 'seed'], out / 'rate_distortion.png'))
  return written


def _rate_distortion(rows: Sequence[Mapping], keys: Sequence[str], path: Path) -> Path:
  """Each member at (rate = KL, distortion = reconstruction NLL), labelled by its swept values."""
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(4.5, 3.6))
  ax.scatter([r['eval']['kl'] for r in rows], [r['eval']['rec'] for r in rows], s=18)
  for r in rows:
    label = ', '.join(f"{k}={r['overrides'][k]}" for k in keys if k in r['overrides'])
    ax.annotate(label, (r['eval']['kl'], r['eval']['rec']), fontsize=6, xytext=(3, 3), textcoords='offset points')
  ax.set(xlabel='rate: KL(q(z|x) || p(z)), nats', ylabel='distortion: -log p(x|z), nats',
         title='held-out rate and distortion')
  return _save(fig, path)


def _numeric(rows: Sequence[Mapping], key: str) -> bool:
  try:
    [float(r['overrides'][key]) for r in rows if key in r['overrides']]
  except (TypeError, ValueError):
    return False
  return True


def _save(fig, path: Path) -> Path:
  import matplotlib.pyplot as plt

  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
