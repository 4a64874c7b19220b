"""THE training step of the loop, on one screen, and its non-finite guard.

`step` is what every scan of the engine runs, for every family::

    batch (uint8 or float pixels, labels, a mask)
      -> sharded over the 'data' mesh axis, pixels made float32 (dynamically binarized if asked)
      -> key = fold_in(keys.step, state.step)
      -> family.train_step(state, batch, key)          (hyperparameters bound by `loop.compile`)
      -> the guard: were the metrics and the new parameters finite?
      -> (state, guard), count-weighted metrics

The guard has two forms, one static flag apart:

- `exact` (skip mode, and chunks padded with all-masked batches): each step also
  checks its new parameters, and a step that is not applied (a non-finite update
  in skip mode, every step after the first bad one in stop mode, a padding
  batch) keeps the old state: a `jnp.where` over the state.
- fast (stop mode, the default): each step checks only its metrics (scalars),
  and the scan checks the parameters once at its end (`finite`). The per-step
  reduction over the parameters and the select cost 4-7% of an MLP epoch on CPU.
  A fast chunk that meets a non-finite value is not used: the loop reruns it
  `exact` from its last checkpoint, to name the first bad step and term, and stops.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxae.data import to_float
from jaxae.errors import UserError
from jaxae.loop import parallel
from jaxae.loop.keys import Keys


class Guard(NamedTuple):
  """`bad_step`: the first non-finite step (-1 if none); `bad_term`: its culprit's index in `terms(metrics)`;
  `skipped`: how many updates were not applied because they were not finite."""

  bad_step: jax.Array
  bad_term: jax.Array
  skipped: jax.Array


def init_guard() -> Guard:
  return Guard(jnp.int32(-1), jnp.int32(-1), jnp.int32(0))


def terms(metric_names) -> list[str]:
  """What `Guard.bad_term` indexes: the metric names (sorted), then the update."""
  return sorted(metric_names) + ['gradient update']


def all_finite(tree) -> jax.Array:
  """True iff every leaf of `tree` is free of NaN and Inf (True for an empty tree).

  Tested through each leaf's sum, which NaN and Inf reach (Inf - Inf is NaN): one
  reduction instead of an elementwise test. A leaf whose finite values sum past
  float32's range (~3e38) also counts as non-finite.
  """
  result = jnp.array(True)
  for leaf in jax.tree.leaves(tree):
    result = result & jnp.isfinite(jnp.sum(leaf))
  return result


def step(train_step, keys: Keys, carry, batch, *, exact: bool, dynamic_binarize: bool, skip_nonfinite: bool,
         mesh=None):
  """One step of the loop: `((state, guard), {'image': [B, H, W, C], 'label': [B], 'mask': [B]}) ->
  ((state, guard), sums)` (a batch without labels passes none on).

  `train_step(state, batch, key) -> (state, metrics)` is the family's, hyperparameters bound. `sums` are the
  step's metrics times its count of real examples, and 'count' (0 for a step not applied).
  """
  state, guard = carry
  batch = {k: parallel.shard_batch(v, mesh) for k, v in batch.items()}
  x, mask = to_float(batch['image']), batch['mask']
  if dynamic_binarize:
    x = jax.random.bernoulli(jax.random.fold_in(keys.binarize, state.step), x).astype(x.dtype)
  key = jax.random.fold_in(keys.step, state.step)
  new, metrics = train_step(state, {**batch, 'image': x}, key)

  finite = jnp.stack([jnp.isfinite(metrics[k]) for k in sorted(metrics)] + [all_finite(new.params) if exact
                                                                             else jnp.bool_(True)])
  real = jnp.sum(mask) > 0
  bad = real & ~jnp.all(finite)
  first_bad = (guard.bad_step < 0) & bad
  guard = Guard(jnp.where(first_bad, state.step, guard.bad_step),
                jnp.where(first_bad, jnp.argmin(finite), guard.bad_term), guard.skipped + bad.astype(jnp.int32))
  applied = real & ~bad & (skip_nonfinite | (guard.bad_step < 0))
  if exact:
    new = jax.tree.map(lambda n, o: jnp.where(applied, n, o), new, state)
  count = jnp.sum(mask) * applied
  return (new, guard), {**{k: jnp.where(applied, v, 0.0) * count for k, v in metrics.items()}, 'count': count}


def finite(guard: Guard, state) -> jax.Array:
  """Whether a chunk met no non-finite value: no bad step, and finite parameters at its end (what a fast
  chunk checks once instead of every step)."""
  return (guard.bad_step < 0) & all_finite(state.params)


def check(guard: Guard, metric_names, applied_count: float, epoch: int, mode: str,
          last_saved: int | None = None) -> None:
  """Raises `UserError` at a non-finite step, unless `mode` is 'skip' and some steps were good.

  The message says what the workdir keeps: the checkpoint at step `last_saved`, or none yet.
  """
  if int(guard.bad_step) < 0 or (mode == 'skip' and applied_count > 0):
    return
  term = terms(metric_names)[int(guard.bad_term)]
  kept = (f'the checkpoint at step {last_saved} is the last good state and is kept' if last_saved is not None
          else 'no checkpoint had been saved yet, so nothing was')
  raise UserError(f'non-finite {term} at step {int(guard.bad_step)} (epoch {epoch}); {kept}: lower '
                  'learning_rate, set grad_clip, check the data, or set nonfinite=skip to drop such updates')
