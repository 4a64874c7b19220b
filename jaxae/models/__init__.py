"""Model families, found by module name.

`get('vae')` imports `jaxae.models.vae`. A family module exports:

- `defaults() -> dict`: its config keys and default values;
- `create_state(key, config, sample_batch) -> state` (the only reader of config);
- `train_step(state, batch, key, *, hp...) -> (state, metrics)`: pure, unjitted;
- `eval_step(state, batch, key, *, hp...) -> metrics`: sums and a `count`;
- `eval_images(state, batch, key, *, hp...) -> {name: [N, H, W, C] in [0, 1]}`;
- `encode`, `decode`, `sample` where the family has them.

Batches are `{'image': [B, H, W, C] float32, 'mask': [B] float32}` (mask is
optional: 0 marks padding in a last partial batch). Adding a family is adding
one module here; the shared test suite picks it up by name.
"""

import importlib
import pkgutil
from types import ModuleType

from jaxae.errors import UserError


def names() -> list[str]:
  """All available family names, sorted."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))


def get(name: str) -> ModuleType:
  """The family module called `name`; `UserError` if there is none."""
  if name not in names():
    raise UserError(f"unknown model '{name}': choose one of {', '.join(names())}")
  return importlib.import_module(f'{__name__}.{name}')
