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


def make_keys(seed: int) -> Keys:
  """The keys `jax.random.key(seed)` splits into, as `prng.key`s (the same bits, drawn faster on CPU)."""
  return Keys(*jax.random.split(prng.key(seed), len(Keys._fields)))
