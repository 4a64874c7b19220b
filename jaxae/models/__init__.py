"""Model families, found by module name: adding a family is adding one module here.

`get('vae')` imports `jaxae.models.vae`. The contract (no base class); every family module exports:

- `HEADLINE`: the metric names the loop shows and plots, e.g. `('loss',)`;
- `KEYS`: `{config key: meaning}` of its own keys (`jaxae-train --list-config`);
- `CAN`: the capabilities it declares, a frozenset of names from `CAPABILITIES`;
- `defaults() -> dict`: its config keys and default values;
- `validate(config)`: `UserError` for a bad value of its keys (checks from `jaxae.checks`);
- `create_state(key, config, sample_batch) -> state` (the only reader of config): a pytree with an int32
  `step` and `params`, traceable (the loop runs it jitted: `create_state(model, ...)` below);
- `train_step(state, batch, key, *, hp...) -> (state, metrics)`: pure, unjitted; `*, hp` are config keys;
- `eval_step(state, batch, key, *, hp...) -> metrics`: per-batch sums and a `count`;
- `eval_images(state, batch, key, *, hp...) -> {name: [N, H, W, C] in [0, 1]}`;
- and the functions its capabilities name (below).

Batches are `{'image': [B, H, W, C] float32, 'label': [B] int32, 'mask': [B] float32}` (mask 0 marks
padding in a last partial batch; label -1 an unlabelled image). The loop, the evaluation suites, the CLI and
the shared tests read `CAN` and never guess with `hasattr`; `tests/test_models.py` checks that every
declaration matches the functions there.
"""

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Protocol, cast

import jax

from jaxae import checks
from jaxae.errors import UserError, require

CAPABILITIES = {
    'encode': 'encode(state, x) -> codes and decode(state, z, *, hp...) -> images in [0, 1]',
    'sample': 'sample(state, key, n, *, hp...) -> n generated images in [0, 1]',
    'stochastic': 'train_step draws randomness from its key (noise, dropout, latent draws)',
    'elbo': 'negative_elbo(state, x, key, *, hp...) and importance_weighted_nll(...): likelihood bounds in nats',
    'gaussian_prior': 'p(z) = N(0, I) (samples, manifolds and likelihoods use it)',
    'prior_density': 'prior_log_density(z, *, hp...) -> log p(z), [N]',
    'classify': 'classify(state, x, *, hp...) -> [B] predicted classes (a semi-supervised classifier)',
    'conditional': 'sample(state, key, n, labels=None, *, hp...) draws the classes `labels` ([n] ints in '
                   '[0, num_classes); None: every class in turn); training reads every batch\'s labels',
}
FUNCTIONS = {'encode': ('encode', 'decode'), 'sample': ('sample',),
             'elbo': ('negative_elbo', 'importance_weighted_nll'), 'prior_density': ('prior_log_density',),
             'classify': ('classify',)}
REQUIRED = ('HEADLINE', 'KEYS', 'CAN', 'defaults', 'validate', 'create_state', 'train_step', 'eval_step',
            'eval_images')


class Family(Protocol):
  """The contract of a family module, as a type: a module with these names is a `Family` (no base class).

  A type checker checks every family module against it (`tests/test_lint.py` runs mypy with each of
  `names()` assigned to a `Family`); the step functions take family-specific keyword-only hyperparameters,
  so they are typed by what they return.
  """

  @property
  def __name__(self) -> str: ...  # the module's, 'jaxae.models.<name>'

  @property
  def HEADLINE(self) -> tuple[str, ...]: ...

  @property
  def KEYS(self) -> Mapping[str, str]: ...

  @property
  def CAN(self) -> frozenset[str]: ...

  def defaults(self) -> dict[str, Any]: ...

  def validate(self, config: Mapping[str, Any], /) -> None: ...

  @property
  def create_state(self) -> Callable[[jax.Array, Any, Any], Any]: ...

  @property
  def train_step(self) -> Callable[..., tuple[Any, Mapping[str, Any]]]: ...

  @property
  def eval_step(self) -> Callable[..., Mapping[str, Any]]: ...

  @property
  def eval_images(self) -> Callable[..., Mapping[str, Any]]: ...


def names() -> list[str]:
  """All available family names, sorted."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))


def get(name: str) -> Family:
  """The family module called `name`; `UserError` if there is none."""
  if name not in names():
    raise UserError(f"unknown model '{name}': choose one of {', '.join(names())}")
  return cast(Family, importlib.import_module(f'{__name__}.{name}'))  # every family is checked to be one


def can(model: Family | ModuleType | str, capability: str) -> bool:
  """Whether family `model` (a module or a name) declares `capability` (a key of `CAPABILITIES`)."""
  assert capability in CAPABILITIES, capability
  return capability in (get(model) if isinstance(model, str) else model).CAN


def with_capability(capability: str) -> list[str]:
  """The names of the families that declare `capability`."""
  return [name for name in names() if can(name, capability)]


def create_state(model: Family | ModuleType, key: jax.Array, config, sample_batch):
  """`model.create_state(key, config, sample_batch)` traced and compiled as one program, as Flax's examples
  `jax.jit(model.init)`, once per family and config in a process: run eagerly, each initialiser and layer of the
  init pass compiles a program of its own (hundreds for a conv GAN: a default `dcgan`'s state took 11.8 s eagerly
  and 3.4 s as one program on a 2-core AMD EPYC). The arrays are the eager ones (DCGAN's init within one float32
  rounding). Reads `sample_batch`'s first example only. The settings in `RUN_ONLY` are not passed on (the state's
  randomness comes from `key`), so the members of a seed sweep share one compiled init.

  Args:
    model: a family module (`get(name)`).
    key: the initialisation key.
    config: a resolved config (`jaxae.config.resolve`: every setting of the family, checked).
    sample_batch: `{'image': [B, H, W, C]}` (and `'label'`), a batch giving the input shape.

  Raises:
    UserError: a config that is not resolved, or images without a batch axis.
  """
  checks.resolved(config, model.defaults(), model.__name__.rsplit('.', 1)[1], 'create_state')
  image = sample_batch['image'] if isinstance(sample_batch, Mapping) and 'image' in sample_batch else None
  shape = getattr(image, 'shape', None)
  require(shape is not None and len(shape) == 4, "sample_batch must be {'image': [B, H, W, C]}, got "
          f"{'image shape ' + str(tuple(shape)) if shape is not None else type(sample_batch).__name__}"
          + ('; add a batch axis, e.g. x[None]' if shape is not None and len(shape) == 3 else ''))
  first = jax.tree.map(lambda a: a[:1], dict(sample_batch))
  items = tuple(sorted((k, v) for k, v in config.items() if k not in RUN_ONLY))
  try:
    init = _jitted_init(cast(Any, model), items)  # a module: hashable
  except TypeError:  # a config value that does not hash: compiled for this call alone
    init = _jitted_init.__wrapped__(model, items)
  return init(key, first)


RUN_ONLY = ('seed', 'data_fingerprint')  # what a run records, not what its networks are made of


@functools.lru_cache(maxsize=16)
def _jitted_init(model: Any, config_items: tuple):
  config = dict(config_items)

  def init(key, first):
    return model.create_state(key, config, first)

  return jax.jit(init)
