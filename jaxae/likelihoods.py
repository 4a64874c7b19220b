"""Decoder likelihoods p(x | out) as objects: the built-ins, found by name, and any object of yours with the
same three methods.

A likelihood has

- `nll(out, x, batch_ndim=1) -> [*batch]`: `-log p(x | out)` in nats, summed over the pixels of each example;
- `mean(out) -> images`: the distribution's mean, an image in [0, 1] (reconstructions, samples);
- `sample(key, out) -> images`: a draw from it.

`out` is the decoder's output (logits, or means), `x` the images `[B, H, W, C]`; with `batch_ndim=2`,
`out: [K, B, ...]` against `x: [1, B, ...]` (broadcast in the fused loop, never materialised) gives `[K, B]`.
The families take a likelihood by name in their config (`likelihood=bernoulli`) or, from research code, as
an object bound in its place (`steps.bind(vae.train_step, {**config, 'likelihood': Mine()})`).

References:
  Loaiza-Ganem & Cunningham, The continuous Bernoulli: fixing a pervasive error in variational autoencoders,
  NeurIPS 2019.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxae.errors import UserError


def flat(a: jax.Array, batch_ndim: int) -> jax.Array:
  """`[*batch, H, W, C] -> [*batch, H*W*C]`. Elementwise work on images runs on this layout: XLA's CPU
  loops vectorize over a long last axis, not over C = 1 (3-4x faster for the likelihoods)."""
  return a.reshape(*a.shape[:batch_ndim], -1)


def squared_error(x_hat: jax.Array, x: jax.Array, batch_ndim: int = 1) -> jax.Array:
  """Half the squared Euclidean error, `0.5 * ||x_hat - x||^2`: `[*batch]`.

  This is the negative log-likelihood of a unit-variance Gaussian decoder,
  up to the constant `D/2 * log(2*pi)`.

  Args:
    x_hat: `[B, ...]` reconstruction (the Gaussian mean).
    x: `[B, ...]` target, same shape.
    batch_ndim: leading axes that are not summed (2 for `[K, B, ...]`; `x` may broadcast).
  """
  return 0.5 * jnp.sum(jnp.square(flat(x_hat, batch_ndim) - flat(x, batch_ndim)), axis=-1)


def bernoulli_nll(logits: jax.Array, x: jax.Array, batch_ndim: int = 1) -> jax.Array:
  """Bernoulli negative log-likelihood from logits, summed over pixels: `[*batch]`.

  `-[x log sigmoid(l) + (1-x) log(1 - sigmoid(l))] = softplus(l) - x*l`,
  which never takes the log of a saturated sigmoid. Targets in [0, 1] that are
  not binary give the continuous cross-entropy (as in most VAE code on MNIST;
  `ContinuousBernoulli` adds the normaliser that makes it a density).

  Args:
    logits: `[B, ...]` decoder logits.
    x: `[B, ...]` targets in [0, 1].
    batch_ndim: leading axes that are not summed (2 for `[K, B, ...]`; `x` may broadcast).
  """
  logits, x = flat(logits, batch_ndim), flat(x, batch_ndim)
  return jnp.sum(jax.nn.softplus(logits) - x * logits, axis=-1)


@runtime_checkable
class Likelihood(Protocol):
  """What a decoder likelihood provides (the module docstring says how each is used)."""

  def nll(self, out: jax.Array, x: jax.Array, batch_ndim: int = 1) -> jax.Array: ...

  def mean(self, out: jax.Array) -> jax.Array: ...

  def sample(self, key: jax.Array, out: jax.Array) -> jax.Array: ...


@dataclass(frozen=True)
class Bernoulli:
  """Independent Bernoulli pixels with logits `out`."""

  def nll(self, out, x, batch_ndim=1):
    return bernoulli_nll(out, x, batch_ndim)

  def mean(self, out):
    return jax.nn.sigmoid(out)

  def sample(self, key, out):
    return jax.random.bernoulli(key, jax.nn.sigmoid(out)).astype(out.dtype)


@dataclass(frozen=True)
class Gaussian:
  """Independent unit-variance Gaussian pixels with means `out`; the NLL leaves out `D/2 log(2 pi)`."""

  def nll(self, out, x, batch_ndim=1):
    return squared_error(out, x, batch_ndim)

  def mean(self, out):
    return jnp.clip(out, 0.0, 1.0)

  def sample(self, key, out):
    return out + jax.random.normal(key, out.shape, out.dtype)


SMALL = 1e-2  # |logit| below which the continuous Bernoulli's normaliser and mean use their Taylor series


@dataclass(frozen=True)
class ContinuousBernoulli:
  """The continuous Bernoulli on [0, 1] with logits `out` (Loaiza-Ganem & Cunningham 2019): the Bernoulli
  cross-entropy plus its normaliser, so that it is a density of grey-level pixels.

  With `l` the logit, the normaliser is `C(l) = l / tanh(l / 2)` (2 at `l = 0`), the mean
  `sigmoid(l) / tanh(l / 2) - 1 / l` (1/2 at 0), and the inverse CDF `log1p(u * expm1(l)) / l`.
  """

  def nll(self, out, x, batch_ndim=1):
    return bernoulli_nll(out, x, batch_ndim) - jnp.sum(log_normalizer(flat(out, batch_ndim)), axis=-1)

  def mean(self, out):
    small = jnp.abs(out) < SMALL
    safe = jnp.where(small, 1.0, out)
    return jnp.where(small, 0.5 + out / 12.0, jax.nn.sigmoid(safe) / jnp.tanh(safe / 2.0) - 1.0 / safe)

  def sample(self, key, out):
    u = jax.random.uniform(key, out.shape, out.dtype)
    a, v = -jnp.abs(out), jnp.where(out > 0, 1.0 - u, u)  # by symmetry, l > 0 draws 1 - x(-l, 1 - u)
    safe = jnp.where(a > -SMALL, -1.0, a)
    x = jnp.where(a > -SMALL, v, jnp.log1p(v * jnp.expm1(safe)) / safe)
    return jnp.where(out > 0, 1.0 - x, x)


def log_normalizer(logits: jax.Array) -> jax.Array:
  """`log C(l)` of the continuous Bernoulli, elementwise: `log(|l| / tanh(|l| / 2))`, its Taylor series
  `log 2 + l^2 / 12` near 0."""
  a = jnp.abs(logits)
  small = a < SMALL
  safe = jnp.where(small, 1.0, a)
  return jnp.where(small, jnp.log(2.0) + jnp.square(logits) / 12.0, jnp.log(safe) - jnp.log(jnp.tanh(safe / 2.0)))


BUILT_IN: dict[str, Likelihood] = {'bernoulli': Bernoulli(), 'gaussian': Gaussian(),
                                   'continuous_bernoulli': ContinuousBernoulli()}
NAMES = tuple(BUILT_IN)


def get(likelihood) -> Likelihood:
  """The likelihood called `likelihood` (one of `NAMES`), or `likelihood` itself if it is an object with
  `nll`, `mean` and `sample`.

  Raises:
    UserError: an unknown name (the allowed ones listed), or an object without those methods.
  """
  if isinstance(likelihood, str):
    if likelihood not in BUILT_IN:
      raise UserError(f"likelihood={likelihood!r} is not one of {', '.join(NAMES)} (names are lower case), nor an "
                      'object with nll, mean and sample (jaxae.likelihoods.Likelihood)')
    return BUILT_IN[likelihood]
  if not isinstance(likelihood, Likelihood):
    raise UserError(f'likelihood {likelihood!r} is neither a name ({", ".join(NAMES)}) nor an object with nll(out, '
                    'x, batch_ndim), mean(out) and sample(key, out) (jaxae.likelihoods.Likelihood)')
  return likelihood
