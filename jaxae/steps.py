"""Optimizers and the one place where steps get their hyperparameters and jit.

A family's `train_step(state, batch, key, *, hp...)` is pure and not jitted;
`bind` fixes its keyword-only hyperparameters from a config, and the loop jits
the bound function once (state donated).
"""

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

TrainState = train_state.TrainState


def make_schedule(learning_rate: float, schedule: str, warmup_steps: int, decay_steps: int):
  """Learning-rate schedule: 'constant', 'cosine' or 'warmup_cosine'."""
  if schedule == 'constant':
    return learning_rate
  if schedule == 'cosine':
    return optax.cosine_decay_schedule(learning_rate, max(decay_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps, max(decay_steps, warmup_steps + 1)
  )


def make_optimizer(config: Mapping[str, Any]) -> optax.GradientTransformation:
  """Adam (AdamW when `weight_decay` > 0), optional global-norm clipping.

  Reads `learning_rate`, `schedule`, `warmup_steps`, `decay_steps`,
  `weight_decay`, `grad_clip` (0 disables clipping).
  """
  lr = make_schedule(
      config['learning_rate'], config['schedule'], config['warmup_steps'], config['decay_steps']
  )
  opt = optax.adamw(lr, weight_decay=config['weight_decay']) if config['weight_decay'] else optax.adam(lr)
  if config['grad_clip']:
    opt = optax.chain(optax.clip_by_global_norm(config['grad_clip']), opt)
  return opt


def create_train_state(apply_fn: Callable, params, config: Mapping[str, Any]) -> TrainState:
  """A `TrainState` with `make_optimizer(config)` and an int32 array step.

  (`TrainState.create` leaves `step` a Python int, which would make the first
  and second calls of a jitted step trace twice.)
  """
  state = TrainState.create(apply_fn=apply_fn, params=params, tx=make_optimizer(config))
  return state.replace(step=jnp.zeros((), jnp.int32))


def gradient_step(state: TrainState, loss_fn: Callable, batch, key, **hp):
  """One optimizer update on `loss_fn(params, apply_fn, batch, key, **hp) -> (loss, metrics)`."""
  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.apply_fn, batch, key, **hp)
  return state.apply_gradients(grads=grads), metrics


def hyperparameters(fn: Callable) -> tuple[str, ...]:
  """Names of `fn`'s keyword-only parameters: the hyperparameters to bind."""
  params = inspect.signature(fn).parameters.values()
  return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def bind(fn: Callable, config: Mapping[str, Any]) -> Callable:
  """`functools.partial(fn, **hp)` with every keyword-only argument taken from `config`."""
  return functools.partial(fn, **{name: config[name] for name in hyperparameters(fn)})
