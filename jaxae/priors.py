"""Priors p(z) as objects: the built-ins, found by name, and any object of yours with the same two methods.

A prior has

- `log_prob(z) -> [...]`: `log p(z)` of codes `z: [..., d]`, summed over the last axis;
- `sample(key, n, latent_dim) -> [n, latent_dim]`: draws from it.

Built-ins ('gaussian' is the VAE's; all three are the adversarial autoencoder's choices):

- 'gaussian': N(0, I) (`StandardNormal`; the VAE's KL against it has a closed form);
- 'mixture': 10 equally weighted 2-D Gaussians, means on a circle of radius
  `MIXTURE_RADIUS`, std `MIXTURE_STD` (Makhzani et al. 2015, Fig. 4);
- 'uniform': uniform on [-1, 1]^d.

References:
  Makhzani et al., Adversarial Autoencoders, ICLR workshop 2016.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from jaxae.errors import UserError, require

MIXTURE_COMPONENTS = 10
MIXTURE_RADIUS = 4.0
MIXTURE_STD = 0.5


@runtime_checkable
class Prior(Protocol):
  """What a prior provides (the module docstring says how each is used)."""

  def log_prob(self, z: jax.Array) -> jax.Array: ...

  def sample(self, key: jax.Array, n: int, latent_dim: int) -> jax.Array: ...


@dataclass(frozen=True)
class StandardNormal:
  """N(0, I)."""

  def log_prob(self, z):
    return -0.5 * jnp.sum(jnp.log(2.0 * jnp.pi) + jnp.square(z), axis=-1)

  def sample(self, key, n, latent_dim):
    return jax.random.normal(key, (n, latent_dim))


@dataclass(frozen=True)
class Uniform:
  """Uniform on [-1, 1]^d (`log_prob` is -inf outside)."""

  def log_prob(self, z):
    inside = jnp.all(jnp.abs(z) <= 1.0, axis=-1)
    return jnp.where(inside, -z.shape[-1] * jnp.log(2.0), -jnp.inf)

  def sample(self, key, n, latent_dim):
    return jax.random.uniform(key, (n, latent_dim), minval=-1.0, maxval=1.0)


@dataclass(frozen=True)
class Mixture:
  """`MIXTURE_COMPONENTS` equally weighted isotropic 2-D Gaussians on a circle."""

  def log_prob(self, z):
    require(z.shape[-1] == 2, f'the mixture prior is over 2-D codes, got codes of size {z.shape[-1]}')
    means = mixture_means().reshape((1,) * (z.ndim - 1) + (MIXTURE_COMPONENTS, 2))
    sq = jnp.sum(jnp.square(z[..., None, :] - means), axis=-1)  # [..., K]
    log_component = -0.5 * sq / MIXTURE_STD**2 - jnp.log(2 * jnp.pi * MIXTURE_STD**2)
    return jax.nn.logsumexp(log_component, axis=-1) - jnp.log(MIXTURE_COMPONENTS)

  def sample(self, key, n, latent_dim):
    require(latent_dim == 2, f'the mixture prior is over 2-D codes, asked for {latent_dim}-D ones')
    k_component, k_noise = jax.random.split(key)
    component = jax.random.randint(k_component, (n,), 0, MIXTURE_COMPONENTS)
    return mixture_means()[component] + MIXTURE_STD * jax.random.normal(k_noise, (n, 2))


BUILT_IN: dict[str, Prior] = {'gaussian': StandardNormal(), 'mixture': Mixture(), 'uniform': Uniform()}
PRIORS = tuple(BUILT_IN)


def get(prior) -> Prior:
  """The prior called `prior` (one of `PRIORS`), or `prior` itself if it is an object with `log_prob` and
  `sample`.

  Raises:
    UserError: an unknown name (the allowed ones listed), or an object without those methods.
  """
  if isinstance(prior, str):
    if prior not in BUILT_IN:
      raise UserError(f"prior={prior!r} is not one of {', '.join(PRIORS)}, nor an object with log_prob and sample "
                      '(jaxae.priors.Prior)')
    return BUILT_IN[prior]
  if not isinstance(prior, Prior):
    raise UserError(f'prior {prior!r} is neither a name ({", ".join(PRIORS)}) nor an object with log_prob(z) and '
                    'sample(key, n, latent_dim) (jaxae.priors.Prior)')
  return prior


def is_standard_normal(prior) -> bool:
  """Whether `prior` is N(0, I), whose KL from a diagonal Gaussian has a closed form."""
  return isinstance(get(prior), StandardNormal)


def check(prior: str, latent_dim: int) -> None:
  """`UserError` unless `prior` is known and fits codes of size `latent_dim`."""
  require(prior in PRIORS, f"prior='{prior}' is not one of {', '.join(PRIORS)}")
  require(prior != 'mixture' or latent_dim == 2,
          f'prior=mixture is a mixture of 2-D Gaussians but latent_dim={latent_dim}: set latent_dim=2 or '
          'choose prior=gaussian or uniform')


def mixture_means() -> jax.Array:
  """`[MIXTURE_COMPONENTS, 2]` component means on the circle."""
  angle = 2 * jnp.pi * jnp.arange(MIXTURE_COMPONENTS) / MIXTURE_COMPONENTS
  return MIXTURE_RADIUS * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def sample(key: jax.Array, n: int, latent_dim: int, prior) -> jax.Array:
  """`n` draws from `prior` (a name or an object): `[n, latent_dim]` float32."""
  return get(prior).sample(key, n, latent_dim)


def log_density(z: jax.Array, prior) -> jax.Array:
  """`log p(z)` for `z: [N, d]` under `prior` (a name or an object): `[N]`."""
  return get(prior).log_prob(z)
