"""Input corruption for denoising autoencoders: pure functions of (x, key).

Each takes `x: [B, ...]` in [0, 1] and returns an array of the same shape and
dtype. The loss is computed against the clean `x`.

References:
  Vincent, Larochelle, Bengio & Manzagol, Extracting and Composing Robust
  Features with Denoising Autoencoders, ICML 2008.
"""

import jax
import jax.numpy as jnp

from jaxae.errors import require


def gaussian(x: jax.Array, key: jax.Array, noise_std: float) -> jax.Array:
  """Additive isotropic Gaussian noise, `x + noise_std * eps`."""
  return x + noise_std * jax.random.normal(key, x.shape, x.dtype)


def masking(x: jax.Array, key: jax.Array, drop_prob: float) -> jax.Array:
  """Masking noise: each input is set to 0 with probability `drop_prob`."""
  keep = jax.random.bernoulli(key, 1.0 - drop_prob, x.shape)
  return jnp.where(keep, x, jnp.zeros_like(x))


def salt_and_pepper(x: jax.Array, key: jax.Array, prob: float) -> jax.Array:
  """Each input is set, with probability `prob`, to 0 or 1 (a fair coin)."""
  hit_key, salt_key = jax.random.split(key)
  hit = jax.random.bernoulli(hit_key, prob, x.shape)
  salt = jax.random.bernoulli(salt_key, 0.5, x.shape).astype(x.dtype)
  return jnp.where(hit, salt, x)


KINDS = ('none', 'gaussian', 'masking', 'salt_and_pepper')


def corrupt(x: jax.Array, key: jax.Array, kind: str, level: float) -> jax.Array:
  """Applies the corruption named `kind` (one of `KINDS`) at `level`.

  `level` is the std for 'gaussian' and the probability for 'masking' and
  'salt_and_pepper'; 'none' returns `x` unchanged. `kind` is static.
  """
  require(kind in KINDS, f"noise={kind!r} is not one of {', '.join(KINDS)}")
  if kind == 'none':
    return x
  return {'gaussian': gaussian, 'masking': masking,
          'salt_and_pepper': salt_and_pepper}[kind](x, key, level)
