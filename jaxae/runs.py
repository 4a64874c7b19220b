"""Load a trained model: `jaxae.load(path)` -> the family, the trained state, the config (and, on demand, the data).

`path` is a training workdir or a folder exported from one (`jaxae.export`, `jaxae.portable`).
`loaded.sample(key, n)`, `encode(x)`, `decode(z)` and `reconstruct(x)` call the family's functions
with the run's hyperparameters bound, jitted once per shape.

Loading a workdir needs only the workdir: the family and the input shape come from
`config.json`, the state from the checkpoint's model item, restored into a
template that the family's `create_state` builds on this process's default
device, whatever number of devices wrote it. No dataset is read and no training
step is traced; `loaded.splits` prepares the run's data the first time it is
asked for (the evaluation suites do).
"""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxae import conditioning, cpu, models, portable, steps
from jaxae import data as data_lib
from jaxae.errors import UserError, require
from jaxae.loop import checkpoint, formats, restore
from jaxae.loop.keys import Keys, make_keys


@dataclass(frozen=True)
class Loaded:
  """A trained run: `model` (the family module), `state`, `config`, `keys`, `step`, and `splits` (its data,
  prepared on first access; for a run on your own arrays, pass them to `load`)."""

  model: Any
  state: Any
  config: dict
  keys: Keys
  step: int
  data: dict | None = None

  @property
  def epochs_done(self) -> float | None:
    """Epochs trained by `step` (None for a run that did not record its data's size)."""
    count = self.config.get('data_fingerprint', {}).get('train', {}).get('count')
    return None if count is None else self.step / -(-count // self.config['batch_size'])

  @property
  def finished(self) -> bool:
    """Whether `step` ends the run (its `epochs` trained). A run still training, or stopped before the end, loads
    from its newest committed checkpoint: False, and `progress` says which."""
    return self.epochs_done is None or self.epochs_done >= self.config['epochs']

  @property
  def progress(self) -> str:
    """Which checkpoint this is, in words, e.g. 'step 1404 (epoch 108 of 400, not finished: its newest committed
    checkpoint)'."""
    if self.epochs_done is None:
      return f'step {self.step}'
    state = 'finished' if self.finished else 'not finished: its newest committed checkpoint'
    return f"step {self.step} (epoch {self.epochs_done:.4g} of {self.config['epochs']}, {state})"

  @functools.cached_property
  def splits(self) -> data_lib.Splits:
    """The run's data; `UserError` if they are not the data it was trained on (`data_fingerprint`)."""
    splits = data_lib.prepare(self.config, self.data)
    changed = data_lib.changes(self.config.get('data_fingerprint', {}), data_lib.fingerprint(splits))
    require(not changed or 'data_fingerprint' not in self.config,
            f'the data of this {self.config["model"]} run are not those it was trained on ({changed}): give it '
            'its own data (data_dir, or data= for your arrays)')
    return splits

  def sample(self, key: jax.Array, n: int, labels=None) -> jax.Array:
    """`n` generated images `[n, H, W, C]` in [0, 1] drawn with `key` (families that can `sample`); a conditional
    family's of the classes `labels` (`[n]` ints; None: every class in turn)."""
    if not models.can(self.model, 'conditional'):
      require(labels is None, f"a {self.config['model']} model is not conditional: sample it without labels (the "
              f"conditional families are {', '.join(models.with_capability('conditional'))})")
      return self._jitted('sample', static_argnums=2)(self.state, key, n)
    labels = conditioning.requested(labels, n, self.config['num_classes'])
    return self._jitted('sample', static_argnums=2)(self.state, key, n, labels)

  def encode(self, x) -> jax.Array:
    """Codes `[N, latent_dim]` of images `x: [N, H, W, C]` in [0, 1] (families that can `encode`)."""
    return self._jitted('encode')(self.state, self._images(x))

  def decode(self, z) -> jax.Array:
    """Images `[N, H, W, C]` in [0, 1] from codes `z: [N, latent_dim]`."""
    z = jax.numpy.asarray(z, jax.numpy.float32)
    d = self.config.get('latent_dim')
    require(z.ndim == 2 and z.shape[1] == d, f'z must be codes [N, {d}] of this {self.config["model"]} model, got '
            f'shape {tuple(z.shape)}')
    return self._jitted('decode')(self.state, z)

  def negative_elbo(self, x, key: jax.Array) -> jax.Array:
    """`[N]` nats: the negative ELBO of each image `x: [N, H, W, C]` (one z draw from `key`), for the families
    with likelihood bounds (`vae`, `iwae`)."""
    return self._jitted('negative_elbo')(self.state, self._images(x), key)

  def importance_weighted_nll(self, x, key: jax.Array, num_samples: int = 1000) -> jax.Array:
    """`[N]` nats: `-log p(x)` of each image `x: [N, H, W, C]` estimated with the IWAE bound of `num_samples`
    importance samples (an upper bound, tighter as it grows), drawn from `key` in chunks (memory bounded)."""
    require(isinstance(num_samples, int) and num_samples >= 1, f'num_samples must be a whole number >= 1, got '
            f'{num_samples!r}')
    return self._jitted('importance_weighted_nll', static_argnums=3)(self.state, self._images(x), key, num_samples)

  def _images(self, x) -> jax.Array:
    """`x` as float32 images of this model's shape; `UserError` naming the expected shape otherwise."""
    x = jax.numpy.asarray(x, jax.numpy.float32)
    shape = tuple(self.config['input_shape'])
    require(x.ndim == 4 and x.shape[1:] == shape, f'x must be images [N, {", ".join(map(str, shape))}] for this '
            f'{self.config["model"]} model, got shape {tuple(x.shape)}')
    return x

  def reconstruct(self, x) -> jax.Array:
    """`decode(encode(x))`: `[N, H, W, C]` in [0, 1]."""
    return self.decode(self.encode(x))

  def _jitted(self, name: str, **jit_options):
    capability = {'sample': 'sample', 'negative_elbo': 'elbo', 'importance_weighted_nll': 'elbo'}.get(name, 'encode')
    require(models.can(self.model, capability), f"a {self.config['model']} model has no {name}(): "
            f"the families that have one are {', '.join(models.with_capability(capability))}")
    cache = self.__dict__.setdefault('_fns', {})  # frozen dataclass: the cache lives beside the fields
    if name not in cache:
      cache[name] = jax.jit(steps.bind(getattr(self.model, name), self.config), **jit_options)
    return cache[name]


def here(config: dict) -> dict:
  """`config` with the kernels of this process's backend (`jaxae.cpu.resolve`): a run or an export loads on any
  backend (the parameters are the same for every kernel choice; loading is not a resume)."""
  return {**config, 'kernels': cpu.resolve('auto')}


def load(workdir: str | Path, step: int | None = None, data: dict | None = None, *,
         allow_nonfinite: bool = False) -> Loaded:
  """The run in `workdir` at checkpoint `step` (default: the newest committed one), or the model exported to
  `workdir` (`jaxae.export`). Reads, never writes: a run may be read while it trains (`Loaded.progress` says
  which checkpoint was read).

  `data`: for a run trained on your own arrays (dataset 'arrays'), the same
  `jaxae.data.from_arrays(...)` again (used only when `splits` is asked for).
  `allow_nonfinite`: load an exported model whose weights hold NaN or Inf (with a warning) instead of refusing it.

  Raises:
    UserError: no run or no checkpoint in `workdir`, or a damaged config, checkpoint or weights file.
  """
  workdir = Path(workdir)
  if portable.is_exported(workdir):
    return _load_exported(workdir, step, data, allow_nonfinite)
  config = checkpoint.read_config(workdir)
  if config is None:
    raise UserError(f'{workdir} holds no run (no config.json): train one first with jaxae-train --workdir {workdir}')
  require(restore.latest_step(workdir / 'checkpoints') is not None, f'{workdir} has no checkpoint yet: let its '
          'training finish an epoch (re-run the same command to resume)')
  model = models.get(config['model'])
  config = formats.migrate(config, workdir, lambda: data_lib.prepare(config, data))
  keys = make_keys(config['seed'], config['prng_impl'])
  state = models.create_state(model, keys.init, here(config), {'image': np.zeros((1, *config['input_shape']),
                                                                                 np.float32)})
  kept = restore.step_folders(workdir / 'checkpoints')
  require(step is None or step in kept, f'{workdir} has no checkpoint {step}; it keeps {kept}')
  state, step = restore.restore(workdir / 'checkpoints', state, step)
  return Loaded(model, state, config, keys, step, data)


def _load_exported(folder: Path, step: int | None, data: dict | None, allow_nonfinite: bool) -> Loaded:
  header = portable.read_header(folder)
  require(step in (None, header['step']), f"{folder} is a model exported at step {header['step']}; it holds no "
          f'step {step}: load it without a step')
  config = header['config']
  keys = make_keys(config['seed'], config['prng_impl'])
  model, state = portable.load_state(folder, {**header, 'config': here(config)}, keys, allow_nonfinite)
  return Loaded(model, state, config, keys, header['step'], data)
