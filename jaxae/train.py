"""The one training loop for every family: `train_and_evaluate(config, workdir)`.

The dataset is placed on the device once; each epoch is one compiled call
(permutation from the epoch key, `lax.scan` over batches, state donated,
metrics reduced on the device), so there is no host round trip per step. The
last partial batch is padded and masked, never dropped. Randomness: one seed
is split into named keys; step `t` draws from `fold_in(keys.step, t)`, epoch
`e` is shuffled with `fold_in(keys.shuffle, e)`, so a resumed run draws
exactly what an uninterrupted one would.
"""

import functools
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxae import checkpoint, data, guard, metrics, models, parallel, plotting, steps
from jaxae import config as config_lib
from jaxae.errors import UserError

RESUMABLE_CHANGES = ('epochs', 'num_figure_images', 'keep_checkpoints', 'data_dir', 'nonfinite')


class Keys(NamedTuple):
  """The run's named keys, all split once from the seed."""

  init: jax.Array
  shuffle: jax.Array
  step: jax.Array
  binarize: jax.Array
  eval: jax.Array
  vis: jax.Array


def make_keys(seed: int) -> Keys:
  return Keys(*jax.random.split(jax.random.key(seed), len(Keys._fields)))


def batch_indices(key: jax.Array | None, n: int, batch_size: int):
  """A (shuffled if key) order of `n` examples padded to whole batches.

  Returns:
    `(index [n_batches, batch_size] int32, mask [n_batches, batch_size] float32)`;
    padding repeats earlier examples with mask 0.
  """
  n_batches = -(-n // batch_size)
  order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
  flat = jnp.arange(n_batches * batch_size)
  index = order[flat % n].reshape(n_batches, batch_size)
  mask = (flat < n).astype(jnp.float32).reshape(n_batches, batch_size)
  return index, mask


def train_chunk(train_step, state, images, epoch, start, keys: Keys, *, batch_size: int, chunk: int,
                dynamic_binarize: bool = False, skip_nonfinite: bool = False, mesh=None):
  """Batches `[start, start + chunk)` of epoch `epoch` over `images` ([N, H, W, C], on device).

  The epoch's batch order comes from `fold_in(keys.shuffle, epoch)`; batches
  past its end are all-masked no-ops, so one compiled chunk size serves every
  chunk. With `chunk` = batches per epoch and `start` = 0 this is a whole epoch.
  With a `mesh`, each batch is split over its 'data' axis (data parallelism).

  Returns:
    `(state, metric sums with 'count' and 'skipped_steps', Guard)`.
  """
  index, mask = batch_indices(jax.random.fold_in(keys.shuffle, epoch), images.shape[0], batch_size)
  pad = -index.shape[0] % chunk
  index = jnp.concatenate([index, jnp.zeros((pad, batch_size), index.dtype)])
  mask = jnp.concatenate([mask, jnp.zeros((pad, batch_size), mask.dtype)])
  index, mask = (jax.lax.dynamic_slice_in_dim(a, start, chunk) for a in (index, mask))

  def body(carry, batch_index):
    state, g = carry
    i, m = batch_index
    x = images[i]
    if mesh is not None:
      x, m = parallel.shard_batch(x, mesh), parallel.shard_batch(m, mesh)
    if dynamic_binarize:
      x = jax.random.bernoulli(jax.random.fold_in(keys.binarize, state.step), x).astype(x.dtype)
    key = jax.random.fold_in(keys.step, state.step)
    state, g, step_metrics, applied = guard.guarded_step(
        train_step, state, g, {'image': x, 'mask': m}, key, skip_nonfinite=skip_nonfinite)
    count = jnp.sum(m) * applied
    return (state, g), {**{k: v * count for k, v in step_metrics.items()}, 'count': count}

  (state, g), per_step = jax.lax.scan(body, (state, guard.init()), (index, mask))
  sums = jax.tree.map(lambda v: jnp.sum(v, axis=0), per_step)
  return state, {**sums, 'skipped_steps': g.skipped.astype(jnp.float32)}, g


def evaluate(eval_step, state, images, key, *, batch_size: int, mesh=None):
  """Metric sums (with 'count') of `eval_step` over all of `images`; batch b uses `fold_in(key, b)`.

  Batches are always `batch_size` (padded, masked), so a stochastic evaluation
  draws the same numbers whatever the number of devices.
  """
  index, mask = batch_indices(None, images.shape[0], batch_size)

  def body(_, inputs):
    b, i, m = inputs
    x = images[i]
    if mesh is not None:
      x, m = parallel.shard_batch(x, mesh), parallel.shard_batch(m, mesh)
    return None, eval_step(state, {'image': x, 'mask': m}, jax.random.fold_in(key, b))

  _, per_batch = jax.lax.scan(body, None, (jnp.arange(index.shape[0]), index, mask))
  return jax.tree.map(lambda v: jnp.sum(v, axis=0), per_batch)


def chunk_size(config, n_train: int) -> tuple[int, int]:
  """`(steps per chunk, chunks per epoch)`: one chunk per epoch unless `checkpoint_every` is set."""
  steps_per_epoch = -(-n_train // config['batch_size'])
  chunk = min(config['checkpoint_every'] or steps_per_epoch, steps_per_epoch)
  return chunk, -(-steps_per_epoch // chunk)


def compile_fns(model, config, n_train: int, mesh=None):
  """The jitted chunk and evaluation functions, hyperparameters bound, state donated."""
  chunk_fn = jax.jit(
      functools.partial(
          train_chunk, steps.bind(model.train_step, config), batch_size=config['batch_size'],
          chunk=chunk_size(config, n_train)[0], dynamic_binarize=config['binarize'] == 'dynamic',
          skip_nonfinite=config['nonfinite'] == 'skip', mesh=mesh,
      ),
      donate_argnums=0,
  )
  eval_fn = jax.jit(
      functools.partial(evaluate, steps.bind(model.eval_step, config), batch_size=config['eval_batch_size'],
                        mesh=mesh)
  )
  return chunk_fn, eval_fn


def check_workdir(workdir: Path, config: dict) -> None:
  """`UserError` if `workdir` holds a run whose config differs in more than RESUMABLE_CHANGES."""
  saved = checkpoint.read_config(workdir)
  if saved is None:
    return
  diff = sorted(k for k in set(saved) | set(config)
                if k not in RESUMABLE_CHANGES and saved.get(k) != config.get(k))
  if diff:
    what = ', '.join(f'{k}: {saved.get(k)!r} there, {config.get(k)!r} now' for k in diff[:3])
    raise UserError(f'{workdir} holds a run with another config ({what}); use a new workdir or the same settings')


def write_figures(model, state, eval_set, keys: Keys, config, workdir: Path, records) -> None:
  """figures/reconstructions.png, samples.png (generative families) and loss.png."""
  out = workdir / 'figures'
  out.mkdir(exist_ok=True)
  x = jnp.asarray(eval_set['image'][: config['num_figure_images']])
  images = jax.device_get(steps.bind(model.eval_images, config)(state, {'image': x}, keys.vis))
  figures = {'reconstructions': plotting.reconstructions(np.asarray(x), images['reconstructions']),
             'loss': plotting.loss_curves(records)}
  if 'samples' in images:
    figures['samples'] = plotting.samples(images['samples'])
  for name, fig in figures.items():
    fig.savefig(out / f'{name}.png', dpi=100)


class Result(NamedTuple):
  state: Any
  config: dict
  records: list


def _log_epoch(log, epoch, state, split, sums, **extra) -> dict:
  means = metrics.means({k: v for k, v in sums.items() if k != 'skipped_steps'})
  record = {'epoch': epoch, 'split': split, 'step': int(state.step), **means, **extra}
  log.write(record)
  return record


def train_and_evaluate(overrides: dict, workdir: str | Path, progress: bool = True) -> Result:
  """Trains `config['model']` on `config['dataset']`, resuming from `workdir` if it holds a run.

  Writes `config.json`, `metrics.jsonl`, `checkpoints/` and `figures/` in `workdir`.
  Every input is validated before anything is written.

  Raises:
    UserError: bad config, data or workdir; or a non-finite loss (the last
      good checkpoint is kept).
  """
  config = config_lib.resolve(overrides)
  workdir = Path(workdir)
  check_workdir(workdir, config)
  model = models.get(config['model'])
  splits = data.prepare(config)
  n_train = len(splits.train['image'])
  steps_per_epoch = -(-n_train // config['batch_size'])
  run_config = {**config, 'decay_steps': config['decay_steps'] or config['epochs'] * steps_per_epoch}
  keys = make_keys(config['seed'])
  try:
    state = model.create_state(keys.init, run_config, {'image': splits.train['image'][:1]})
  except ValueError as e:
    raise UserError(f'{e}') from None

  mesh = parallel.make_mesh()
  for key in ('batch_size', 'eval_batch_size'):
    parallel.check_batch_size(key, config[key], mesh)

  workdir.mkdir(parents=True, exist_ok=True)
  checkpoint.write_config(workdir, config)
  train_x, eval_x = parallel.replicate((splits.train['image'], splits.eval['image']), mesh)
  chunk_fn, eval_fn = compile_fns(model, config, n_train, mesh)
  chunk, per_epoch = chunk_size(config, n_train)
  zero = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(chunk_fn, state, train_x, 1, 0, keys)[1])
  ckpt = checkpoint.Checkpointer(workdir / 'checkpoints', config['keep_checkpoints'])
  restored, position = ckpt.restore({'state': state, 'sums': zero})
  state, sums = parallel.replicate(restored['state'], mesh), restored['sums']
  log = metrics.MetricsLog(workdir / 'metrics.jsonl', position // per_epoch if position else -1)
  if position == 0:
    _log_epoch(log, 0, state, 'eval', jax.device_get(eval_fn(state, eval_x, keys.eval)))

  bar = tqdm(total=config['epochs'] * per_epoch * chunk, initial=position * chunk, disable=not progress,
             unit='step', desc=config['model'])
  seconds = 0.0
  while position < config['epochs'] * per_epoch:
    epoch, c = divmod(position, per_epoch)
    epoch += 1
    t0 = time.perf_counter()
    state, chunk_sums, g = chunk_fn(state, train_x, epoch, c * chunk, keys)
    chunk_sums, g = jax.device_get((chunk_sums, g))  # the one host sync per chunk; state stays on device
    seconds = (0.0 if c == 0 else seconds) + time.perf_counter() - t0
    guard.check(g, [k for k in chunk_sums if k not in ('count', 'skipped_steps')], float(chunk_sums['count']),
                epoch, config['nonfinite'])
    sums = jax.tree.map(np.add, zero if c == 0 else sums, chunk_sums)
    position += 1
    if position % per_epoch == 0:
      train = _log_epoch(log, epoch, state, 'train', sums, seconds=seconds, examples_per_sec=n_train / seconds,
                         skipped_steps=int(sums['skipped_steps']))
      test = _log_epoch(log, epoch, state, 'eval', jax.device_get(eval_fn(state, eval_x, keys.eval)))
      bar.set_postfix(loss=f"{train['loss']:.3f}", eval=f"{test['loss']:.3f}")
    ckpt.save(position, {'state': state, 'sums': sums})
    bar.update(chunk)
  bar.close()
  ckpt.close()
  write_figures(model, state, splits.eval, keys, config, workdir, log.records)
  return Result(state, config, log.records)
