"""The one place that reads the config and compiles: a run's chunk and evaluation functions.

Hyperparameters are bound first (`steps.bind`), then each function is jitted
once, the training state donated:

    chunk(state, data, epoch, start, keys) -> (state, guard, metric sums)
    evaluate(state, eval_data, key) -> metric sums

`data`: `{'image': [N, H, W, C], 'label': [N]}` (labels optional). `chunk` runs
batches `[start, start + steps)` of epoch `epoch`, resident (one compiled scan,
the data on the device) or streamed (`data_mode`: groups of
`stream_steps` batches read on the host, each group one compiled scan).
"""

import contextlib
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax

from jaxae import steps
from jaxae.loop import scan
from jaxae.loop.position import Plan
from jaxae.loop.step import finite, step


class Compiled(NamedTuple):
  """A run's compiled functions; `steps` batches per chunk, `per_epoch` chunks per epoch.

  `chunk` is fast (`loop.step`'s guard checks the parameters once, at the end) when `fast`, else `exact`;
  `finite(guard, state)` tells whether a fast chunk met no non-finite value.
  """

  chunk: Callable
  exact: Callable
  fast: bool
  finite: Callable
  evaluate: Callable
  steps: int
  per_epoch: int


def compile_fns(model, config, n_train: int, mesh=None, resident: bool = True) -> Compiled:
  """`Compiled` for `model` under `config` on `n_train` training images (on `mesh`, or one device); its chunks
  are those of `Plan.of(config, n_train)`."""
  train_step, eval_step = steps.bind(model.train_step, config), steps.bind(model.eval_step, config)
  plan = Plan.of(config, n_train)
  n_steps, per_epoch = plan.chunk, plan.chunks_per_epoch
  skip = config['nonfinite'] == 'skip'
  options = dict(dynamic_binarize=config['binarize'] == 'dynamic', skip_nonfinite=skip, mesh=mesh)

  def scan_group(exact, state, guard, batches, keys):
    return scan.scan_steps(functools.partial(step, train_step, keys, exact=exact, **options), state, guard, batches)

  def resident_chunk(exact, state, data, epoch, start, keys):
    return scan.resident_chunk(functools.partial(step, train_step, keys, exact=exact, **options), state, data,
                               epoch, start, keys.shuffle, batch_size=config['batch_size'], chunk=n_steps)

  # Steps not applied must keep the old state (exact): in skip mode, and in all-masked padding batches.
  fast = not skip and plan.whole_chunks
  exact: Callable
  chunk: Callable
  if resident:
    exact, chunk = (jax.jit(functools.partial(resident_chunk, e), donate_argnums=0) for e in (True, False))
  else:
    exact_group = jax.jit(functools.partial(scan_group, True), donate_argnums=0)  # also the padded last group
    streamed = functools.partial(scan.streamed_chunk, batch_size=config['batch_size'], chunk=n_steps,
                                 group=config['stream_steps'], threads=config['read_threads'], mesh=mesh)
    exact = functools.partial(streamed, exact_group, exact_group)
    chunk = functools.partial(streamed, jax.jit(functools.partial(scan_group, False), donate_argnums=0), exact_group)
  chunk = chunk if fast else exact
  evaluate = jax.jit(functools.partial(scan.evaluate, eval_step, batch_size=config['eval_batch_size'], mesh=mesh))
  return Compiled(chunk, exact, fast, jax.jit(finite), evaluate, n_steps, per_epoch)


def matmul_precision(name: str) -> contextlib.AbstractContextManager:
  """`jax.default_matmul_precision(name)`, read when each function is traced; 'default' leaves JAX's setting
  (`jax_default_matmul_precision`, e.g. the test suite's 'highest') as it is."""
  return contextlib.nullcontext() if name == 'default' else jax.default_matmul_precision(name)
