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


def impl_name(impl: str = 'auto', backend: str | None = None) -> str:
  """The PRNG implementation `impl` names: 'auto' is jaxae's unrolled threefry (`prng.NAME`) on XLA CPU, which that
  compiler needs to fuse a draw into one pass (a CPU-only speedup), and elsewhere (`backend`, default JAX's) the
  implementation `jax_default_prng_impl` chooses (threefry2x32 unless set). Both threefry draw the same bits."""
  if impl == prng.NAME and not prng.REGISTERED:  # JAX's registry changed: the same bits, JAX's own function
    return 'threefry2x32'
  if impl != 'auto':
    return impl
  cpu = (backend or jax.default_backend()) == 'cpu' and prng.REGISTERED
  return prng.NAME if cpu else str(jax.config.jax_default_prng_impl)  # type: ignore[attr-defined]  # set by JAX


def root_key(seed: int, impl: str = 'auto', backend: str | None = None) -> jax.Array:
  """The run's typed key, of the implementation `impl_name(impl, backend)`."""
  return jax.random.key(seed, impl=impl_name(impl, backend))


def make_keys(seed: int, impl: str = 'auto', backend: str | None = None) -> Keys:
  """The keys `root_key(seed, impl, backend)` splits into."""
  return Keys(*jax.random.split(root_key(seed, impl, backend), len(Keys._fields)))
