"""The randomness plan of a run: one seed split once into named keys.

Step `t` draws from `fold_in(keys.step, t)` (its dynamic binarization from
`fold_in(keys.binarize, t)`), epoch `e` is shuffled with `fold_in(keys.shuffle, e)`,
evaluation batch `b` draws from `fold_in(keys.eval, b)` and the figures from
`keys.vis`, so a resumed run draws exactly what an uninterrupted one would.
The engine, the evaluation suites and research code all take their keys from here.
"""

from typing import NamedTuple

import jax

from jaxae import prng


class Keys(NamedTuple):
  """The run's named keys, all split once from the seed."""

  init: jax.Array
  shuffle: jax.Array
  step: jax.Array
  binarize: jax.Array
  eval: jax.Array
  vis: jax.Array


def root_key(seed: int, backend: str | None = None) -> jax.Array:
  """The run's typed key. On XLA CPU a `prng.key`: JAX's threefry bits with the hash unrolled, which that compiler
  needs to fuse a draw into one pass (a CPU-only speedup); elsewhere (`backend`, default JAX's) the standard
  `jax.random.key(seed)`, whose implementation `jax_default_prng_impl` chooses. With the default threefry both
  draw the same bits."""
  return prng.key(seed) if (backend or jax.default_backend()) == 'cpu' else jax.random.key(seed)


def make_keys(seed: int, backend: str | None = None) -> Keys:
  """The keys `root_key(seed)` splits into."""
  return Keys(*jax.random.split(root_key(seed, backend), len(Keys._fields)))
