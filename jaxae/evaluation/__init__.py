"""Evaluation suites over a loaded run, found by module name like the model families.

A suite module exports `check(loaded) -> None` (a `UserError` when the suite
does not fit the run, e.g. reconstructions of a GAN, anomaly detection of a run
trained on every class) and
`run(loaded, key, **options) -> (metrics: dict, figures: {name: Figure})`,
`loaded` being `jaxae.load(workdir)`. Options: `num_samples` (samples),
`iwae_samples` (likelihood), `progress`; a suite ignores those it does not use.
Helper modules (no `run`) hold shared pieces: `classifier`, `common`; each
suite's pure measures (AUROC, Fréchet distance, probes...) live in the suite.
"""

import importlib
import pkgutil
from types import ModuleType

from jaxae.errors import UserError


def names() -> list[str]:
  """The available suites, sorted."""
  found = (importlib.import_module(f'{__name__}.{m.name}') for m in pkgutil.iter_modules(__path__))
  return sorted(m.__name__.rsplit('.', 1)[1] for m in found if hasattr(m, 'run'))


def get(name: str) -> ModuleType:
  """The suite called `name`; `UserError` if there is none."""
  if name not in names():
    raise UserError(f"unknown suite '{name}': choose from {', '.join(names())}")
  return importlib.import_module(f'{__name__}.{name}')


def number(v) -> str:
  """A table cell: floats to 4 significant digits, nothing for None."""
  return f'{v:.4g}' if isinstance(v, float) else ('' if v is None else str(v))


def headline(suite: str, metrics: dict) -> dict:
  """The suite's headline numbers of `metrics` (its `HEADLINE`), labelled with their units: `{'iwae_nll (nats)':
  85.2, ...}`; those the run's metrics lack are left out."""
  return {f'{k} ({unit})': metrics[k] for k, unit in get(suite).HEADLINE.items() if k in metrics}


def comparison(results: dict, about: dict) -> str:
  """A Markdown table, one row per run: `about[run]` (e.g. model, step), then every suite's headline numbers.

  `results`: `{run: {suite: {'metrics': {...}}}}`, as `scripts/evaluate.py` writes to results.json.
  """
  rows = {run: {**about.get(run, {}), **{f'{suite}: {k}': v for suite, r in suites.items()
                                          for k, v in headline(suite, r['metrics']).items()}}
          for run, suites in results.items()}
  suites = list(dict.fromkeys(suite for r in results.values() for suite in r))
  present = {k for row in rows.values() for k in row}
  columns = list(dict.fromkeys(k for a in about.values() for k in a))
  columns += [f'{s}: {k} ({u})' for s in suites for k, u in get(s).HEADLINE.items() if f'{s}: {k} ({u})' in present]
  lines = ['| run | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
  lines += [f'| {run} | ' + ' | '.join(number(row.get(c)) for c in columns) + ' |' for run, row in rows.items()]
  return '\n'.join(lines) + '\n'
