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
