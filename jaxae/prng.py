"""JAX's threefry2x32 keys, with the hash unrolled so that XLA fuses each draw into one loop.

`key(seed)` makes a typed PRNG key for every `jax.random` function (and Flax's
dropout) that draws exactly the bits the default `jax.random.key(seed)` draws:
seeding, split and fold_in are JAX's threefry2x32 functions, and random bits are
JAX's (partitionable scheme, its default) computed with the hash unrolled for
draws of `UNROLL_FROM` values or more.

Why: on CPU, JAX lowers the Threefry hash as a rolled 5-iteration while loop, so
XLA runs every noise draw, dropout mask and reparameterization as a loop of
small kernels, each reading and writing the whole array. Unrolled (as JAX lowers
it on GPU/TPU), the 20 rounds fuse into one pass: a 128x784 Gaussian draw takes
less than half the time on CPU. Elsewhere the compiled code is what JAX's own
unrolled lowering gives. Small draws and key derivations keep the rolled loop,
which compiles faster.

Reference: Salmon, Moraes, Dror, Shaw, Parallel Random Numbers: As Easy as
1, 2, 3, SC 2011 (Threefry-2x32, 20 rounds).
"""

import importlib
import math
import warnings

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # the key-schedule constant of Threefish


def threefry2x32(k1, k2, x1, x2):
  """The Threefry-2x32 hash of counters `(x1, x2)` under key `(k1, k2)`, 20 rounds, unrolled.

  All uint32; `x1` and `x2` of one shape, `k1` and `k2` scalars. Returns `(y1, y2)` of that shape.
  """
  ks = (k1, k2, k1 ^ k2 ^ _PARITY)
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):  # 5 blocks of 4 rounds, a key injection after each
    for r in _ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))) ^ x1
    x1 = x1 + ks[(i + 1) % 3]
    x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def _random_bits(key, bit_width, shape):
  """Uniform bits of `bit_width` (8, 16, 32 or 64) and `shape`: JAX's threefry random bits
  (partitionable form: one hash of each element's row-major index), unrolled for draws of
  at least `UNROLL_FROM` values."""
  size = math.prod(shape)
  if size < UNROLL_FROM or size >= 2**32 or not jax.config.jax_threefry_partitionable:
    return _THREEFRY.random_bits(key, bit_width, shape)
  counts = lax.iota(np.uint32, size).reshape(shape)  # the index's high 32 bits are 0
  y1, y2 = threefry2x32(key[0], key[1], jnp.zeros(shape, np.uint32), counts)
  if bit_width == 64:
    return (y1.astype(np.uint64) << np.uint64(32)) | y2.astype(np.uint64)
  return (y1 ^ y2).astype({8: np.uint8, 16: np.uint16, 32: np.uint32}[bit_width])


_THREEFRY = jax.extend.random.threefry_prng_impl
UNROLL_FROM = 4096  # smaller draws keep JAX's rolled loop: it compiles faster and runs about as fast
NAME = 'jaxae_threefry2x32'
IMPL = jax.extend.random.define_prng_impl(
    key_shape=_THREEFRY.key_shape, seed=_THREEFRY.seed, split=_THREEFRY.split, random_bits=_random_bits,
    fold_in=_THREEFRY.fold_in, name=NAME, tag='jfry')


def register(registry: str = 'jax._src.random.prng') -> bool:
  """Registers IMPL under NAME, as JAX registers its own: `jax.random.key(seed, impl=NAME)` then works, and so
  does restoring saved keys (orbax records `str(jax.random.key_impl(k))` and looks that name up). JAX has no
  public call for this; `tests/test_prng.py` round-trips keys through orbax to catch a change. If JAX's private
  `registry` is absent or changed shape: False, one warning, and runs draw with JAX's threefry2x32 (the same
  bits, drawn slower on CPU)."""
  try:
    jax_prng = importlib.import_module(registry)
    if NAME not in jax_prng.prngs:
      jax_prng.register_prng(IMPL._impl)  # type: ignore[attr-defined]  # JAX's own registrations pass it so
  except (ImportError, AttributeError, TypeError) as e:
    warnings.warn(f"jaxae's unrolled threefry cannot be registered with this JAX ({type(e).__name__}: {e}): runs "
                  "draw with JAX's threefry2x32, the same bits", RuntimeWarning, stacklevel=2)
    return False
  return True


REGISTERED = register()


def key(seed: int) -> jax.Array:
  """A typed PRNG key with the bits of `jax.random.key(seed)`, drawn faster on CPU."""
  return jax.random.key(seed, impl=IMPL)
