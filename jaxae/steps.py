"""Optimizers, training states, and the one place where steps get their hyperparameters.

The loop's contract for a state is small: a pytree with an int32 `step` (composite
steps taken) and `params` (every trainable array, checked by the non-finite guard).
One-player families use flax's `TrainState`; several-player families (AAE, GANs)
use `PlayerState`: named parts (`params[part]`) and named phases, each phase
updating a tuple of parts with its own optax transform and state.

A family's `train_step(state, batch, key, *, hp...)` is pure and not jitted;
`bind` fixes its keyword-only hyperparameters from a config, and the loop jits
the bound function once (state donated).
"""

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.core import FrozenDict
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


def make_optimizer(config: Mapping[str, Any], updates_per_step: int = 1) -> optax.GradientTransformation:
  """Adam (AdamW when `weight_decay` > 0), optional global-norm clipping.

  Reads `learning_rate`, `adam_b1`, `adam_b2`, `schedule`, `warmup_steps`,
  `decay_steps` (in composite steps), `weight_decay`, `grad_clip` (0 disables
  clipping). `updates_per_step` is how often this optimizer updates per composite
  step (a WGAN critic: `n_critic`), so its schedule spans the same run.
  """
  lr = make_schedule(config['learning_rate'], config['schedule'], config['warmup_steps'] * updates_per_step,
                     config['decay_steps'] * updates_per_step)
  b1, b2 = config['adam_b1'], config['adam_b2']
  if config['weight_decay']:
    opt = optax.adamw(lr, b1, b2, weight_decay=config['weight_decay'])
  else:
    opt = optax.adam(lr, b1, b2)
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


class Phase(NamedTuple):
  """One optimizer of a several-player family: the parts it updates and its transform."""

  parts: tuple[str, ...]
  tx: optax.GradientTransformation


class PlayerState(struct.PyTreeNode):
  """Training state of a family with several players (adversarial autoencoders, GANs).

  Attributes:
    step: int32 scalar, composite steps taken (every phase of one step counts once).
    params: `{part: params}`, e.g. `{'generator': ..., 'discriminator': ...}`.
    opt_state: `{phase: optax state}` over that phase's parts only.
    nets: `{part: linen module}` (static).
    phases: `{phase: Phase}` (static). A part may belong to several phases: the
      AAE encoder is updated by the reconstruction and the generator phase, each
      with its own optimizer state.
  """

  step: jax.Array
  params: dict
  opt_state: dict
  nets: FrozenDict = struct.field(pytree_node=False)
  phases: FrozenDict = struct.field(pytree_node=False)

  @classmethod
  def create(cls, nets: Mapping[str, Any], params: Mapping[str, Any], phases: Mapping[str, Phase]) -> 'PlayerState':
    opt_state = {name: phase.tx.init({p: params[p] for p in phase.parts}) for name, phase in phases.items()}
    return cls(jnp.zeros((), jnp.int32), dict(params), opt_state, FrozenDict(nets), FrozenDict(phases))

  def apply(self, part: str, *args, **kwargs):
    """Runs network `part` with its params: `nets[part].apply({'params': params[part]}, ...)`."""
    return self.nets[part].apply({'params': self.params[part]}, *args, **kwargs)

  def apply_phase(self, phase: str, grads: Mapping[str, Any]) -> 'PlayerState':
    """One update of phase `phase` from `grads` (`{part: grads}` for its parts); other parts untouched."""
    parts = self.phases[phase].parts
    current = {p: self.params[p] for p in parts}
    updates, opt_state = self.phases[phase].tx.update(dict(grads), self.opt_state[phase], current)
    return self.replace(params={**self.params, **optax.apply_updates(current, updates)},
                        opt_state={**self.opt_state, phase: opt_state})


def phase_step(state: PlayerState, phase: str, loss_fn: Callable, *args):
  """One update of `phase` on `loss_fn(state, *args) -> (loss, aux)`.

  The loss sees every part through `state.apply`; only the phase's parts are
  differentiated (the others enter as constants).

  Returns:
    `(state, aux)`.
  """
  parts = state.phases[phase].parts
  loss = lambda sub: loss_fn(state.replace(params={**state.params, **sub}), *args)
  grads, aux = jax.grad(loss, has_aux=True)({p: state.params[p] for p in parts})
  return state.apply_phase(phase, grads), aux


def hyperparameters(fn: Callable) -> tuple[str, ...]:
  """Names of `fn`'s keyword-only parameters: the hyperparameters to bind."""
  params = inspect.signature(fn).parameters.values()
  return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def bind(fn: Callable, config: Mapping[str, Any]) -> Callable:
  """`functools.partial(fn, **hp)` with every keyword-only argument taken from `config`.

  Raises:
    TypeError: `fn` takes a keyword-only argument that is not a config key, or
      gives one a default (a renamed or mistyped hyperparameter fails here,
      instead of silently falling back to a default).
  """
  params = inspect.signature(fn).parameters.values()
  for p in params:
    if p.kind is inspect.Parameter.KEYWORD_ONLY and (p.name not in config or p.default is not p.empty):
      why = 'has a default' if p.name in config else 'is not a config key'
      raise TypeError(f'{fn.__module__}.{fn.__qualname__}: hyperparameter {p.name!r} {why}; keyword-only '
                      'arguments of a step must be config keys without defaults')
  return functools.partial(fn, **{name: config[name] for name in hyperparameters(fn)})
