"""Variational autoencoder with a beta-weighted KL and importance-weighted NLL.

Encoder q(z|x) = N(mean, diag(exp(logvar))); prior p(z) = N(0, I) (`prior`; research code may bind any
`jaxae.priors.Prior`); decoder p(x|z) Bernoulli (logits), unit Gaussian or continuous Bernoulli
(`likelihood`; or any `jaxae.likelihoods.Likelihood`). Training minimises the negative
beta-ELBO, `rec + beta * KL`, with z = mean + exp(logvar / 2) * eps drawn from
the 'latent' stream. With beta = 1, `rec + kl` is the negative ELBO, an upper
bound on -log p(x); `importance_weighted_nll` tightens it with K samples (any
K: the samples are drawn in chunks, memory bounded). With `iwae_samples = K > 1`
training minimises the K-sample IWAE bound instead (the `iwae` preset, K = 5).

References:
  Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014.
  Higgins et al., beta-VAE, ICLR 2017.
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import checks, losses, priors, steps
from jaxae import nn as jnn
from jaxae.errors import require

__all__ = ['CAN', 'HEADLINE', 'KEYS', 'VAE', 'create_state', 'decode', 'defaults', 'encode', 'eval_images', 'eval_step',
           'importance_weighted_nll', 'log_weights', 'loss_fn', 'make_network', 'negative_elbo',
           'negative_elbo_terms', 'reparameterize', 'sample', 'train_step', 'validate']

HEADLINE = ('loss',)  # rec + beta * KL; with beta = 1 the negative ELBO
CAN = frozenset({'encode', 'sample', 'stochastic', 'elbo', 'gaussian_prior'})


KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    beta='weight of the KL term (1: the ELBO)',
    iwae_samples='importance samples K of the training bound (1: the ELBO; > 1: the IWAE bound, beta = 1)',
    prior='the prior p(z): gaussian, N(0, I), whose KL has a closed form (research code may bind any object with '
          'log_prob and sample, jaxae.priors.Prior: the KL is then a one-sample estimate)',
)
PRIORS = ('gaussian',)  # by name; an object from research code takes the name's place


def defaults() -> dict:
  return dict(
      arch='mlp', hidden=(512, 256), conv_features=(32, 64), latent_dim=16,
      likelihood='bernoulli', beta=1.0, iwae_samples=1, norm='none', prior='gaussian',
  )


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS, 'prior': PRIORS}, non_negative=('beta',),
               positive=('iwae_samples',))
  checks.require(config['norm'] != 'batch', 'norm=batch would make each ELBO and IWAE bound depend on the other '
                 'examples of its batch; set norm=layer (per example) or none')
  checks.require(config['iwae_samples'] == 1 or config['beta'] == 1,
                     f"the IWAE bound (iwae_samples={config['iwae_samples']}) has no beta: "
                     'set beta=1 or iwae_samples=1')


def reparameterize(key: jax.Array, mean: jax.Array, logvar: jax.Array, num_samples: int | None = None) -> jax.Array:
  """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) drawn from `key` (Kingma & Welling 2014, Sec. 2.4).

  z is a differentiable function of (mean, logvar); all randomness is in `key`.
  Shapes: `mean, logvar: [B, d]` -> z `[B, d]`, or `[num_samples, B, d]` when given.
  """
  if num_samples is not None:
    mean, logvar = mean[None], logvar[None]
  shape = mean.shape if num_samples is None else (num_samples, *mean.shape[1:])
  eps = jax.random.normal(key, shape, mean.dtype)
  return mean + jnp.exp(0.5 * logvar) * eps


class VAE(nn.Module):
  """Gaussian encoder and a decoder; `__call__` samples z with the 'latent' stream."""

  encoder: nn.Module
  decoder: nn.Module

  def encode(self, x: jax.Array, train: bool = False):
    """`[B, H, W, C] -> (mean, logvar)`, each `[B, latent_dim]`."""
    mean, logvar = jnp.split(self.encoder(x, train), 2, axis=-1)
    return mean, logvar

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """`[B, latent_dim] -> [B, H, W, C]` decoder outputs (logits or means)."""
    return self.decoder(z, train)

  def draw(self, x: jax.Array, train: bool = False):
    """`(out, mean, logvar, z)`: one z ~ q(z|x) reparameterized from the 'latent' stream, and its decoding."""
    mean, logvar = self.encode(x, train)
    z = reparameterize(self.make_rng('latent'), mean, logvar)
    return self.decode(z, train), mean, logvar, z

  def __call__(self, x: jax.Array, train: bool = False):
    """Returns `(out, mean, logvar)` with out decoded from one reparameterized z."""
    return self.draw(x, train)[:3]


def make_network(config, image_shape) -> VAE:
  """The VAE of a resolved `config` for images of shape `image_shape` `(H, W, C)`."""
  checks.resolved(config, defaults(), 'vae', 'make_network')
  arch, hidden, conv = config['arch'], config['hidden'], config['conv_features']
  kw = dict(norm=config['norm'], **jnn.compute(config))
  return VAE(jnn.make_encoder(arch, 2 * config['latent_dim'], hidden, conv, **kw),
             jnn.make_decoder(arch, image_shape, hidden, conv, **kw))


def create_state(key: jax.Array, config, sample_batch) -> steps.TrainState:
  x = sample_batch['image'][:1]
  net = make_network(config, x.shape[1:])
  return steps.create_train_state(net.apply, net.init({'params': key, 'latent': key}, x), config)


def negative_elbo_terms(params, apply_fn, x: jax.Array, key: jax.Array, *args, likelihood=checks.UNSET,
                        prior='gaussian') -> tuple[jax.Array, jax.Array]:
  """Per-example `(rec, kl)`, each `[B]` nats, with one z ~ q(z|x) drawn from `key`; `x: [B, H, W, C]`.

  The KL has its closed form against N(0, I) (`losses.gaussian_kl`); against another prior (an object,
  `jaxae.priors.Prior`) it is the one-sample estimate `log q(z|x) - log p(z)` at the z of the reconstruction:
  unbiased, not exact, and its gradient noisier.
  """
  likelihood = checks.keyword_only('negative_elbo_terms', 'likelihood', args, likelihood)
  losses.check_images('x', x)
  if priors.is_standard_normal(prior):
    out, mean, logvar = apply_fn({'params': params}, x, rngs={'latent': key})
    return losses.reconstruction_nll(out, x, likelihood), losses.gaussian_kl(mean, logvar)
  out, mean, logvar, z = apply_fn({'params': params}, x, rngs={'latent': key}, method='draw')
  kl = losses.gaussian_log_density(z, mean, logvar) - priors.get(prior).log_prob(z)
  return losses.reconstruction_nll(out, x, likelihood), kl


def log_weights(params, apply_fn, x: jax.Array, key: jax.Array, num_samples: int, *args, likelihood=checks.UNSET,
                prior='gaussian') -> jax.Array:
  """`log p(x, z_k) - log q(z_k | x)` for K = `num_samples` draws z_k ~ q(z|x) from `key`: `[K, B]`;
  `x: [B, H, W, C]`, `prior` a name or a `jaxae.priors.Prior`.

  The K * B decoder passes run as one batch (memory: K * B images).
  """
  likelihood = checks.keyword_only('log_weights', 'likelihood', args, likelihood)
  losses.check_images('x', x)
  mean, logvar = apply_fn({'params': params}, x, method='encode')
  z = reparameterize(key, mean, logvar, num_samples)  # [K, B, latent]
  mean, logvar = mean[None], logvar[None]
  out = apply_fn({'params': params}, z.reshape(-1, z.shape[-1]), method='decode')
  log_px_z = -losses.reconstruction_nll(out.reshape(num_samples, *x.shape), x[None], likelihood, batch_ndim=2)
  return log_px_z + priors.get(prior).log_prob(z) - losses.gaussian_log_density(z, mean, logvar)


def loss_fn(params, apply_fn, batch, key, *, likelihood, beta, iwae_samples, prior='gaussian'):
  """Negative beta-ELBO (or, for `iwae_samples` > 1, the negative IWAE bound) averaged over the batch:
  `(loss, metrics)`; `batch['image']: [B, H, W, C]`, an optional `batch['mask']: [B]` (0: padding).

  `likelihood` and `prior`: names or objects (`jaxae.likelihoods`, `jaxae.priors`). Metrics: 'loss'; for the
  ELBO also rec, kl and -ELBO ('nelbo'), nats per example.
  """
  mask = batch.get('mask')
  if iwae_samples > 1:
    nll = -losses.iwae_bound(log_weights(params, apply_fn, batch['image'], key, iwae_samples, likelihood=likelihood,
                                         prior=prior))
    loss = losses.masked_mean(nll, mask)
    return loss, {'loss': loss}
  rec, kl = negative_elbo_terms(params, apply_fn, batch['image'], key, likelihood=likelihood, prior=prior)
  rec, kl = losses.masked_mean(rec, mask), losses.masked_mean(kl, mask)
  loss = rec + beta * kl
  return loss, {'loss': loss, 'rec': rec, 'kl': kl, 'nelbo': rec + kl}


def train_step(state, batch, key, *, likelihood, beta, iwae_samples, prior=checks.UNSET):
  """`(state, batch, key) -> (state, metrics of loss_fn)`; key feeds z."""
  prior = checks.new_setting('vae.train_step', 'prior', prior, 'gaussian')
  return steps.gradient_step(state, loss_fn, batch, key, likelihood=likelihood, beta=beta,
                             iwae_samples=iwae_samples, prior=prior)


def eval_step(state, batch, key, *, likelihood, beta, iwae_samples, prior=checks.UNSET):
  """Sums of loss (the training objective), rec, kl and -ELBO (nats) over the batch, and `count`."""
  prior = checks.new_setting('vae.eval_step', 'prior', prior, 'gaussian')
  x, mask = batch['image'], batch.get('mask')
  rec, kl = negative_elbo_terms(state.params, state.apply_fn, x, key, likelihood=likelihood, prior=prior)
  loss = rec + beta * kl
  if iwae_samples > 1:
    loss = -losses.iwae_bound(log_weights(state.params, state.apply_fn, x, jax.random.fold_in(key, 1),
                                          iwae_samples, likelihood=likelihood, prior=prior))
  return {'loss': losses.masked_sum(loss, mask), 'rec': losses.masked_sum(rec, mask),
          'kl': losses.masked_sum(kl, mask), 'nelbo': losses.masked_sum(rec + kl, mask),
          'count': losses.masked_count(batch)}


def negative_elbo(state, x: jax.Array, key: jax.Array, *, likelihood, prior=checks.UNSET) -> jax.Array:
  """Per-example -ELBO `[B]` nats of images `x: [B, H, W, C]` (one z draw; the KL as `negative_elbo_terms`
  says): the VAE's anomaly score."""
  prior = checks.new_setting('vae.negative_elbo', 'prior', prior, 'gaussian')
  rec, kl = negative_elbo_terms(state.params, state.apply_fn, x, key, likelihood=likelihood, prior=prior)
  return rec + kl


def encode(state, x: jax.Array) -> jax.Array:
  """Posterior means `[B, latent_dim]` (the deterministic code)."""
  mean, _ = state.apply_fn({'params': state.params}, x, method='encode')
  return mean


def decode(state, z: jax.Array, *, likelihood) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1]: the decoder mean at z."""
  out = state.apply_fn({'params': state.params}, z, method='decode')
  return losses.decoder_mean(out, likelihood)


def sample(state, key: jax.Array, n: int, *, likelihood, latent_dim, prior=checks.UNSET) -> jax.Array:
  """`n` images from z ~ p(z): the decoder means, `[n, H, W, C]`."""
  prior = checks.new_setting('vae.sample', 'prior', prior, 'gaussian')
  z = priors.get(prior).sample(key, n, latent_dim)
  return decode(state, z, likelihood=likelihood)


def eval_images(state, batch, key, *, likelihood, latent_dim, prior=checks.UNSET):
  """Reconstructions through the posterior mean, and samples from a fixed prior draw."""
  prior = checks.new_setting('vae.eval_images', 'prior', prior, 'gaussian')
  x = batch['image']
  return {
      'reconstructions': decode(state, encode(state, x), likelihood=likelihood),
      'samples': sample(state, key, x.shape[0], likelihood=likelihood, latent_dim=latent_dim, prior=prior),
  }


def importance_weighted_nll(state, x: jax.Array, key: jax.Array, num_samples: int, chunk: int = 500, *,
                            likelihood, prior=checks.UNSET) -> jax.Array:
  """-log p(x) of images `x: [B, H, W, C]` estimated with the K-sample IWAE bound, K = `num_samples`: `[B]`
  nats (an upper bound on the NLL, in expectation decreasing in K). Samples are drawn `chunk` at a time
  (memory: chunk * B decoded images, whatever K).

  For the Gaussian likelihood the decoder NLL omits `D/2 log 2pi`, so the
  value is the NLL up to that constant.
  """
  prior = checks.new_setting('vae.importance_weighted_nll', 'prior', prior, 'gaussian')
  require(isinstance(num_samples, int) and num_samples >= 1, f'num_samples must be a whole number >= 1 (static: '
          f'jit with static_argnums), got {num_samples!r}')
  fn = functools.partial(log_weights, state.params, state.apply_fn, x, num_samples=min(chunk, num_samples),
                         likelihood=likelihood, prior=prior)
  return -losses.iwae_bound_chunked(fn, key, num_samples, chunk)
