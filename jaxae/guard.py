"""Non-finite guard: catch NaN/Inf inside the compiled step, without a host sync per step.

`guarded_step` wraps any family's `train_step`: a step whose loss terms or
updated parameters are not finite leaves the state as it was. The `Guard`
record travels through the scan carry; the host reads it once per chunk.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxae.errors import UserError


class Guard(NamedTuple):
  """`bad_step`: the first non-finite step (-1 if none); `bad_term`: its culprit's
  index in `terms(metrics)`; `skipped`: how many updates were dropped."""

  bad_step: jax.Array
  bad_term: jax.Array
  skipped: jax.Array


def init() -> Guard:
  return Guard(jnp.int32(-1), jnp.int32(-1), jnp.int32(0))


def terms(metric_names) -> list[str]:
  """What `Guard.bad_term` indexes: the metric names (sorted), then the update."""
  return sorted(metric_names) + ['gradient update']


def all_finite(tree) -> jax.Array:
  """True iff every leaf of `tree` is free of NaN and Inf (True for an empty tree).

  Tested through each leaf's sum, which NaN and Inf reach (Inf - Inf is NaN):
  one reduction instead of an elementwise test. A leaf whose finite values sum
  past float32's range (~3e38) also counts as non-finite.
  """
  result = jnp.array(True)
  for leaf in jax.tree.leaves(tree):
    result = result & jnp.isfinite(jnp.sum(leaf))
  return result


def guarded_step(train_step, state, guard: Guard, batch, key, *, skip_nonfinite: bool):
  """`train_step(state, batch, key)`, applied only if every metric and parameter is finite.

  A batch whose mask is all zero (padding) is a no-op. Without
  `skip_nonfinite`, the first bad step freezes the state for the rest of the
  call, so the loop can stop with the last good parameters.

  Returns:
    `(state, guard, metrics (0 where not applied), applied: bool scalar)`.
  """
  new_state, metrics = train_step(state, batch, key)
  finite = [jnp.isfinite(metrics[k]) for k in sorted(metrics)]
  finite.append(all_finite(new_state.params))
  finite = jnp.stack(finite)
  real = jnp.sum(batch['mask']) > 0
  bad = real & ~jnp.all(finite)
  first_bad = (guard.bad_step < 0) & bad
  guard = Guard(jnp.where(first_bad, state.step, guard.bad_step),
                jnp.where(first_bad, jnp.argmin(finite), guard.bad_term), guard.skipped + bad.astype(jnp.int32))
  apply = real & ~bad & (skip_nonfinite | (guard.bad_step < 0))
  state = jax.lax.cond(apply, lambda: new_state, lambda: state)  # a select, not a `where` over every leaf
  return state, guard, {k: jnp.where(apply, v, 0.0) for k, v in metrics.items()}, apply


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
