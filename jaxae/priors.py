"""Priors p(z) for adversarial autoencoders: sampled from explicit keys, with log-densities.

- 'gaussian': N(0, I);
- 'mixture': 10 equally weighted 2-D Gaussians, means on a circle of radius
  `MIXTURE_RADIUS`, std `MIXTURE_STD` (Makhzani et al. 2015, Fig. 4);
- 'uniform': uniform on [-1, 1]^d.

References:
  Makhzani et al., Adversarial Autoencoders, ICLR workshop 2016.
"""

import jax
import jax.numpy as jnp

from jaxae.errors import require

PRIORS = ('gaussian', 'mixture', 'uniform')
MIXTURE_COMPONENTS = 10
MIXTURE_RADIUS = 4.0
MIXTURE_STD = 0.5


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


def sample(key: jax.Array, n: int, latent_dim: int, prior: str) -> jax.Array:
  """`n` draws from `prior`: `[n, latent_dim]` float32."""
  if prior == 'gaussian':
    return jax.random.normal(key, (n, latent_dim))
  if prior == 'uniform':
    return jax.random.uniform(key, (n, latent_dim), minval=-1.0, maxval=1.0)
  k_component, k_noise = jax.random.split(key)
  component = jax.random.randint(k_component, (n,), 0, MIXTURE_COMPONENTS)
  return mixture_means()[component] + MIXTURE_STD * jax.random.normal(k_noise, (n, 2))


def log_density(z: jax.Array, prior: str) -> jax.Array:
  """`log p(z)` for `z: [N, d]`: `[N]` (-inf outside a uniform prior's support)."""
  d = z.shape[-1]
  if prior == 'gaussian':
    return -0.5 * jnp.sum(jnp.square(z), axis=-1) - 0.5 * d * jnp.log(2 * jnp.pi)
  if prior == 'uniform':
    inside = jnp.all(jnp.abs(z) <= 1.0, axis=-1)
    return jnp.where(inside, -d * jnp.log(2.0), -jnp.inf)
  sq = jnp.sum(jnp.square(z[:, None, :] - mixture_means()[None]), axis=-1)  # [N, K]
  log_component = -0.5 * sq / MIXTURE_STD**2 - jnp.log(2 * jnp.pi * MIXTURE_STD**2)
  return jax.nn.logsumexp(log_component, axis=-1) - jnp.log(MIXTURE_COMPONENTS)
