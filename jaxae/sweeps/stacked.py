"""One group's compiled program: the loop's own step, for every member at once under `jax.vmap`.

The members' states, keys and swept hyperparameters gain a leading member axis `[M, ...]`; the family's
`train_step` is bound as for a single run (`steps.bind`), the swept hyperparameters passed as that member's
scalars. Each member shuffles its epochs with its own key, so a member draws exactly the batches and the
randomness of the same config trained alone. As in a single run, a chunk runs the loop's fast step (the
parameters checked once, at the chunk's end) and is run again with its `exact` step (a step not applied keeps
the old state) when a member met a non-finite value. A member that is no longer `alive` (failed, or stopped
early) sees only all-masked batches and keeps its state: the others train on.

    fast(states, alive [M], data, epoch, start, keys, hp) -> (states, guards, sums)   (states kept)
    exact(...)                                                                          (states donated)
    finite(guards, states) -> [M] bool
    evaluate(states, eval_data, keys, hp) -> sums
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxae import steps
from jaxae.loop import parallel, scan
from jaxae.loop.position import Plan
from jaxae.loop.step import finite, step


def stack(trees: Sequence[Any]):
  """`[tree, ...]` -> one tree whose leaves have a leading member axis, in the structure of the first (the
  members' static parts, such as each state's own optimizer object, are alike but not the same objects)."""
  leaves = [jax.tree.leaves(t) for t in trees]
  return jax.tree.unflatten(jax.tree.structure(trees[0]), [jnp.stack(xs) for xs in zip(*leaves, strict=True)])


def unstack(tree, members: int) -> list:
  """The inverse of `stack`: member `i`'s tree is every leaf's row `i` (one compiled call for all of them)."""
  return _unstack(tree, members)


@functools.partial(jax.jit, static_argnums=1)
def _unstack(tree, members: int) -> list:
  return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(members)]


def hyperparameters(configs: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, jax.Array]:
  """`{name: float32 [M]}`: the swept step hyperparameters of the members."""
  return {k: jnp.asarray([float(c[k]) for c in configs], jnp.float32) for k in names}


def place(tree, mesh):
  """`tree` with its member axis split over `mesh`'s devices (the mesh's one axis), members, not batches,
  spread out; the whole tree on the one device without a mesh of several."""
  if mesh is None or mesh.devices.size == 1:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])))


class Program(NamedTuple):
  """A group's jitted functions. `fast` (None in skip mode and for chunks padded with all-masked batches, as
  for a single run): the loop's fast step, its input states kept (not donated), so that a chunk where a member
  turned non-finite (`finite` tells, per member) is run again `exact` from them, naming the first bad step."""

  fast: Any
  exact: Any
  finite: Callable
  evaluate: Callable


def compile_group(model, config: Mapping[str, Any], swept: Sequence[str], plan: Plan, data_per_member: bool
                  ) -> Program:
  """The group's `Program` (see the module docstring); `config`: any member's (they agree but on `swept`)."""
  fixed = lambda fn: {k: config[k] for k in steps.hyperparameters(fn) if k not in swept}
  steps.bind(model.train_step, config), steps.bind(model.eval_step, config)  # the single run's checks
  options = dict(dynamic_binarize=config['binarize'] == 'dynamic', skip_nonfinite=config['nonfinite'] == 'skip')

  def member_chunk(exact, state, alive, data, epoch, start, keys, hp):
    train_step = functools.partial(model.train_step, **fixed(model.train_step), **_own(model.train_step, hp))
    member_step = lambda carry, batch: step(train_step, keys, carry, {**batch, 'mask': batch['mask'] * alive},
                                            exact=exact, **options)
    new, guard, sums = scan.resident_chunk(member_step, state, data, epoch, start, keys.shuffle,
                                           batch_size=config['batch_size'], chunk=plan.chunk)
    return jax.tree.map(lambda n, o: jnp.where(alive > 0, n, o), new, state), guard, sums  # a fast step moves on

  def member_evaluate(state, data, keys, hp):
    eval_step = functools.partial(model.eval_step, **fixed(model.eval_step), **_own(model.eval_step, hp))
    return scan.evaluate(eval_step, state, data, keys.eval, batch_size=config['eval_batch_size'])

  data_axis = 0 if data_per_member else None
  chunk = lambda exact: jax.vmap(functools.partial(member_chunk, exact), in_axes=(0, 0, data_axis, None, None, 0, 0))
  fast = jax.jit(chunk(False)) if config['nonfinite'] != 'skip' and plan.whole_chunks else None
  return Program(fast, jax.jit(chunk(True), donate_argnums=0), jax.jit(jax.vmap(finite)),
                 jax.jit(jax.vmap(member_evaluate, in_axes=(0, data_axis, 0, 0))))


def _own(fn, hp: Mapping[str, jax.Array]) -> dict:
  """The member's scalars of the swept hyperparameters that `fn` takes."""
  return {k: v for k, v in hp.items() if k in steps.hyperparameters(fn)}


def memory_bytes(compiled) -> int | None:
  """What XLA reserves for one call of `compiled` (a `jax.stages.Compiled`: arguments, outputs and
  temporaries, donated arguments counted once), or None where the backend does not say."""
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
             - stats.alias_size_in_bytes)


def device_limit(mesh) -> int | None:
  """The bytes one device may allocate (None on CPU, where JAX does not say)."""
  device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
  stats = device.memory_stats()
  return None if not stats else stats.get('bytes_limit')


def as_member_data(datasets: Sequence[Mapping[str, Any]], shared: bool, mesh):
  """The group's training (or held-out) data on the device: one copy when every member's is the same, else
  stacked `[M, N, ...]`, split over the mesh as the states are."""
  if shared:
    return parallel.replicate({k: np.asarray(v) for k, v in datasets[0].items()}, mesh)
  return place(stack([{k: jnp.asarray(v) for k, v in d.items()} for d in datasets]), mesh)
