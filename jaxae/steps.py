"""Optimizers, training states, and the one place where steps get their hyperparameters.

The loop's contract for a state is small: a pytree with an int32 `step` (composite
steps taken), `params` (every trainable array, checked by the non-finite guard) and
`batch_stats` (the networks' non-parameter state: batch norm's running averages,
`{}` for networks without; updated by training steps, read by evaluation).
One-player families use `TrainState` (flax's, plus `batch_stats`); several-player
families (AAE, GANs) use `PlayerState`: named parts (`params[part]`) and named phases,
each phase updating a tuple of parts with its own optax transform and state.

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

from jaxae.checks import UNSET
from jaxae.errors import require


class TrainState(train_state.TrainState):
  """Flax's `TrainState` plus `batch_stats`, the network's 'batch_stats' collection (`{}` without batch norm),
  as in the Flax ImageNet example; `apply_gradients(grads=g, batch_stats=s)` stores new statistics."""

  batch_stats: Any = struct.field(default_factory=dict)

  def variables(self) -> dict:
    """`{'params': params, 'batch_stats': batch_stats}`: what `apply_fn` takes."""
    return {'params': self.params, 'batch_stats': self.batch_stats}


SCHEDULES = ('constant', 'cosine', 'warmup_cosine')


def make_schedule(learning_rate: float, schedule: str, warmup_steps: int, decay_steps: int):
  """Learning-rate schedule: 'constant', 'cosine' or 'warmup_cosine'."""
  require(schedule in SCHEDULES, f"schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
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


def create_train_state(apply_fn: Callable, variables: Mapping[str, Any], config: Mapping[str, Any]) -> TrainState:
  """A `TrainState` of `net.init`'s `variables` ('params', and 'batch_stats' if any) with `make_optimizer(config)`
  and an int32 array step.

  (`TrainState.create` leaves `step` a Python int, which would make the first
  and second calls of a jitted step trace twice.)
  """
  state = TrainState.create(apply_fn=apply_fn, params=variables['params'], tx=make_optimizer(config),
                            batch_stats=variables.get('batch_stats', {}))
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
    batch_stats: `{part: batch_stats}` for the parts with batch norm (`run` updates them, `apply` reads them).
    opt_state: `{phase: optax state}` over that phase's parts only.
    nets: `{part: linen module}` (static).
    phases: `{phase: Phase}` (static). A part may belong to several phases: the
      AAE encoder is updated by the reconstruction and the generator phase, each
      with its own optimizer state.
  """

  step: jax.Array
  params: dict
  opt_state: dict
  batch_stats: dict
  nets: FrozenDict = struct.field(pytree_node=False)
  phases: FrozenDict = struct.field(pytree_node=False)

  @classmethod
  def create(cls, nets: Mapping[str, Any], variables: Mapping[str, Any], phases: Mapping[str, Phase]) -> 'PlayerState':
    """From `{part: net.init(...)}` (each `{'params', and 'batch_stats' if the net has batch norm}`)."""
    params = {part: v['params'] for part, v in variables.items()}
    stats = {part: v['batch_stats'] for part, v in variables.items() if 'batch_stats' in v}
    opt_state = {name: phase.tx.init({p: params[p] for p in phase.parts}) for name, phase in phases.items()}
    return cls(jnp.zeros((), jnp.int32), params, opt_state, stats, FrozenDict(nets), FrozenDict(phases))

  def variables(self, part: str) -> dict:
    return {'params': self.params[part], 'batch_stats': self.batch_stats.get(part, {})}

  def apply(self, part: str, *args, **kwargs):
    """Runs network `part` in evaluation mode (batch norm reads the running averages):
    `nets[part].apply({'params': params[part], 'batch_stats': ...}, ...)`."""
    return self.nets[part].apply(self.variables(part), *args, **kwargs)

  def run(self, part: str, *args, **kwargs) -> tuple[Any, 'PlayerState']:
    """Runs network `part` in training mode (`train=True`: dropout, batch norm on the batch's statistics):
    `(output, state with part's running averages updated)`."""
    out, updates = self.nets[part].apply(self.variables(part), *args, train=True, mutable=['batch_stats'],
                                         **kwargs)
    if part not in self.batch_stats:
      return out, self
    return out, self.replace(batch_stats={**self.batch_stats, part: updates['batch_stats']})

  def apply_phase(self, phase: str, grads: Mapping[str, Any]) -> 'PlayerState':
    """One update of phase `phase` from `grads` (`{part: grads}` for its parts); other parts untouched."""
    parts = self.phases[phase].parts
    current = {p: self.params[p] for p in parts}
    updates, opt_state = self.phases[phase].tx.update(dict(grads), self.opt_state[phase], current)
    return self.replace(params={**self.params, **optax.apply_updates(current, updates)},
                        opt_state={**self.opt_state, phase: opt_state})


def init_players(key: jax.Array, nets: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict:
  """`{part: variables}`: each network of `nets` initialised on its example input `inputs[part]`, with a key of
  its own split from `key` in the order of `nets` (the several-player families' setup)."""
  keys = dict(zip(nets, jax.random.split(key, len(nets)), strict=True))
  return {part: net.init(keys[part], inputs[part]) for part, net in nets.items()}


def player_state(key: jax.Array, nets: Mapping[str, Any], inputs: Mapping[str, Any], config: Mapping[str, Any],
                 phases: Mapping[str, tuple[str, ...]]) -> PlayerState:
  """The `PlayerState` of `nets` (`init_players`), each phase `{name: parts}` with an optimizer of `config`'s."""
  tx = make_optimizer(config)
  return PlayerState.create(nets, init_players(key, nets, inputs), {name: Phase(parts, tx) for name, parts in
                                                                     phases.items()})


def phase_step(state: PlayerState, phase: str, loss_fn: Callable, *args):
  """One update of `phase` on `loss_fn(state, *args) -> (loss, (aux, state))`.

  The loss sees every part through `state.run` (training mode), which returns the state with new batch
  statistics, and returns that state; only the phase's parts are differentiated (the others enter as
  constants, their statistics updated all the same, as PyTorch's modules in train mode).

  Returns:
    `(state, aux)`: the phase's update applied, the batch statistics of the loss's forward passes kept.
  """
  parts = state.phases[phase].parts
  loss = lambda sub: loss_fn(state.replace(params={**state.params, **sub}), *args)
  grads, (aux, after) = jax.grad(loss, has_aux=True)({p: state.params[p] for p in parts})
  return state.replace(batch_stats=after.batch_stats).apply_phase(phase, grads), aux


def update_average(state: PlayerState, part: str, decay: float) -> PlayerState:
  """Moves the part `f'{part}_average'` (the same network, in no phase) toward part `part`'s weights:
  `avg <- d avg + (1 - d) params` with `d = min(decay, (1 + t) / (10 + t))` after composite step t, so the first
  steps are not held to the initial weights (as TensorFlow's `ExponentialMovingAverage`). Averaging a GAN
  generator's iterates: Yazici et al., The Unusual Effectiveness of Averaging in GAN Training, ICLR 2019."""
  t = state.step.astype(jnp.float32)
  d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
  name = f'{part}_average'
  average = jax.tree.map(lambda a, p: d * a + (1.0 - d) * p, state.params[name], state.params[part])
  return state.replace(params={**state.params, name: average})


def hyperparameters(fn: Callable) -> tuple[str, ...]:
  """Names of `fn`'s keyword-only parameters: the hyperparameters to bind."""
  params = inspect.signature(fn).parameters.values()
  return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def bind(fn: Callable, config: Mapping[str, Any]) -> Callable:
  """`functools.partial(fn, **hp)` with every keyword-only argument taken from `config`.

  Raises:
    TypeError: `fn` takes a keyword-only argument that is not a config key, or
      gives one a default (a renamed or mistyped hyperparameter fails here,
      instead of silently falling back to a default); `checks.UNSET`, the
      placeholder of a hyperparameter new in this release, is not a default.
  """
  params = inspect.signature(fn).parameters.values()
  for p in params:
    if p.kind is inspect.Parameter.KEYWORD_ONLY and (p.name not in config or p.default not in (p.empty, UNSET)):
      why = 'has a default' if p.name in config else 'is not a config key'
      raise TypeError(f'{fn.__module__}.{fn.__qualname__}: hyperparameter {p.name!r} {why}; keyword-only '
                      'arguments of a step must be config keys without defaults')
  return functools.partial(fn, **{name: config[name] for name in hyperparameters(fn)})
