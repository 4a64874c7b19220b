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
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxae import checkpoint, data, metrics, models, plotting, steps
from jaxae import config as config_lib
from jaxae.errors import UserError

RESUMABLE_CHANGES = ('epochs', 'num_figure_images', 'keep_checkpoints', 'data_dir')


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


class Guard(NamedTuple):
  """On-device record of non-finite steps in an epoch (no host sync per step).

  `bad_step` is the first step whose metrics or updated params were not
  finite (-1 if none), `bad_term` the index of the culprit in
  `guard_terms(metrics)`, `skipped` how many updates were dropped.
  """

  bad_step: jax.Array
  bad_term: jax.Array
  skipped: jax.Array


def guard_terms(step_metrics) -> list[str]:
  """Names `Guard.bad_term` indexes into: the metric names (sorted), then the update."""
  return sorted(step_metrics) + ['gradient update']


def guarded_step(train_step, state, guard: Guard, batch, key, *, skip_nonfinite: bool):
  """`train_step`, but a non-finite loss term or update leaves `state` as it was.

  Without `skip_nonfinite`, the first bad step freezes the state for the rest
  of the epoch, so the loop can stop with the last good parameters.
  """
  new_state, step_metrics = train_step(state, batch, key)
  finite = [jnp.isfinite(step_metrics[k]) for k in sorted(step_metrics)]
  finite.append(jnp.all(jnp.array([jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(new_state.params)])))
  finite = jnp.stack(finite)
  ok = jnp.all(finite)
  first_bad = (guard.bad_step < 0) & ~ok
  guard = Guard(jnp.where(first_bad, state.step, guard.bad_step),
                jnp.where(first_bad, jnp.argmin(finite), guard.bad_term), guard.skipped + (~ok).astype(jnp.int32))
  apply = ok if skip_nonfinite else ok & (guard.bad_step < 0)
  state = jax.tree.map(lambda new, old: jnp.where(apply, new, old), new_state, state)
  return state, guard, {k: jnp.where(apply, v, 0.0) for k, v in step_metrics.items()}, apply


def train_epoch(train_step, state, images, epoch, keys: Keys, *, batch_size: int, dynamic_binarize: bool,
                skip_nonfinite: bool = False):
  """One pass over `images` ([N, H, W, C], on device).

  Returns:
    `(state, metric sums with 'count', Guard)`; examples of skipped or frozen
    steps are not counted.
  """
  index, mask = batch_indices(jax.random.fold_in(keys.shuffle, epoch), images.shape[0], batch_size)

  def body(carry, batch_index):
    state, guard = carry
    i, m = batch_index
    x = images[i]
    if dynamic_binarize:
      x = jax.random.bernoulli(jax.random.fold_in(keys.binarize, state.step), x).astype(x.dtype)
    key = jax.random.fold_in(keys.step, state.step)
    state, guard, step_metrics, applied = guarded_step(
        train_step, state, guard, {'image': x, 'mask': m}, key, skip_nonfinite=skip_nonfinite)
    count = jnp.sum(m) * applied
    return (state, guard), {**{k: v * count for k, v in step_metrics.items()}, 'count': count}

  guard = Guard(jnp.int32(-1), jnp.int32(-1), jnp.int32(0))
  (state, guard), per_step = jax.lax.scan(body, (state, guard), (index, mask))
  return state, jax.tree.map(lambda v: jnp.sum(v, axis=0), per_step), guard


def evaluate(eval_step, state, images, key, *, batch_size: int):
  """Metric sums (with 'count') of `eval_step` over all of `images`; batch b uses `fold_in(key, b)`."""
  index, mask = batch_indices(None, images.shape[0], min(batch_size, images.shape[0]))

  def body(_, inputs):
    b, i, m = inputs
    return None, eval_step(state, {'image': images[i], 'mask': m}, jax.random.fold_in(key, b))

  _, per_batch = jax.lax.scan(body, None, (jnp.arange(index.shape[0]), index, mask))
  return jax.tree.map(lambda v: jnp.sum(v, axis=0), per_batch)


def compile_fns(model, config):
  """The jitted epoch and evaluation functions, hyperparameters bound, state donated."""
  epoch_fn = jax.jit(
      functools.partial(
          train_epoch, steps.bind(model.train_step, config), batch_size=config['batch_size'],
          dynamic_binarize=config['binarize'] == 'dynamic', skip_nonfinite=config['nonfinite'] == 'skip',
      ),
      donate_argnums=0,
  )
  eval_fn = jax.jit(
      functools.partial(evaluate, steps.bind(model.eval_step, config), batch_size=config['eval_batch_size'])
  )
  return epoch_fn, eval_fn


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


def check_guard(guard: Guard, sums, epoch: int, mode: str) -> None:
  """Stops the run (`UserError`) at a non-finite step, unless `mode` is 'skip' and some steps were good."""
  if int(guard.bad_step) < 0 or (mode == 'skip' and float(sums['count']) > 0):
    return
  term = guard_terms([k for k in sums if k != 'count'])[int(guard.bad_term)]
  raise UserError(f'non-finite {term} at step {int(guard.bad_step)} (epoch {epoch}); nothing from this epoch '
                  'was saved and the last good checkpoint is kept: lower learning_rate, set grad_clip, '
                  'check the data, or set nonfinite=skip to drop such updates')


def _log_epoch(log, epoch, state, split, sums, **extra) -> dict:
  record = {'epoch': epoch, 'split': split, 'step': int(state.step), **metrics.means(sums), **extra}
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
  steps_per_epoch = math.ceil(n_train / config['batch_size'])
  run_config = {**config, 'decay_steps': config['decay_steps'] or config['epochs'] * steps_per_epoch}
  keys = make_keys(config['seed'])
  try:
    state = model.create_state(keys.init, run_config, {'image': splits.train['image'][:1]})
  except ValueError as e:
    raise UserError(f'{e}') from None

  workdir.mkdir(parents=True, exist_ok=True)
  checkpoint.write_config(workdir, config)
  ckpt = checkpoint.Checkpointer(workdir / 'checkpoints', config['keep_checkpoints'])
  state, start = ckpt.restore(state)
  log = metrics.MetricsLog(workdir / 'metrics.jsonl', start)
  train_x, eval_x = jax.device_put(splits.train['image']), jax.device_put(splits.eval['image'])
  epoch_fn, eval_fn = compile_fns(model, config)
  if start == 0:
    _log_epoch(log, 0, state, 'eval', jax.device_get(eval_fn(state, eval_x, keys.eval)))

  bar = tqdm(total=config['epochs'] * steps_per_epoch, initial=start * steps_per_epoch,
             disable=not progress, unit='step', desc=config['model'])
  for epoch in range(start + 1, config['epochs'] + 1):
    t0 = time.perf_counter()
    state, sums, guard = jax.device_get(epoch_fn(state, train_x, epoch, keys))
    seconds = time.perf_counter() - t0
    check_guard(guard, sums, epoch, config['nonfinite'])
    train = _log_epoch(log, epoch, state, 'train', sums, seconds=seconds, examples_per_sec=n_train / seconds,
                       skipped_steps=int(guard.skipped))
    test = _log_epoch(log, epoch, state, 'eval', jax.device_get(eval_fn(state, eval_x, keys.eval)))
    ckpt.save(epoch, state)
    bar.update(steps_per_epoch)
    bar.set_postfix(loss=f"{train['loss']:.3f}", eval=f"{test['loss']:.3f}")
  bar.close()
  ckpt.close()
  write_figures(model, state, splits.eval, keys, config, workdir, log.records)
  return Result(state, config, log.records)
