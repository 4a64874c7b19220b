"""The network of the hierarchical VAE (`jaxae.models.hvae`): L stochastic layers z_1 ... z_L, two inference
directions, and three priors for the top layer.

Generative model, shared by both directions:

    p(x, z) = p(x | z_1) p(z_1 | z_2) ... p(z_{L-1} | z_L) p(z_L),

with p(x | z_1) the VAE's decoder, each p(z_i | z_{i+1}) a diagonal Gaussian whose mean and log-variance come from
a dense stack of z_{i+1}, and p(z_L) the `prior`: N(0, I), a learned mixture of Gaussians, or the VampPrior.

Inference q(z | x):

- 'bottom_up' (Burda et al. 2016, the IWAE's two-layer model): q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}), each
  layer's Gaussian computed from the *sample* of the layer below;
- 'top_down' (Sønderby et al. 2016, the Ladder VAE): a deterministic upward pass gives every layer a Gaussian
  N(mu_hat_i, var_hat_i) of x alone; then from the top down, q(z_L | x) = N(mu_hat_L, var_hat_L) and
  q(z_i | z_{i+1}, x) is the precision-weighted merge of N(mu_hat_i, var_hat_i) with the generative
  p(z_i | z_{i+1}) = N(mu_p, var_p):  var_q = 1 / (1/var_hat + 1/var_p),  mu_q = var_q (mu_hat/var_hat + mu_p/var_p).
  Inference and generation share the top-down path.

The layer next to the data (x -> z_1 -> x) is the VAE's encoder and decoder (`jaxae.nn`, any `arch`), so with L = 1
this network is the VAE's, parameter for parameter. Every Gaussian is (mean, log-variance).

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
  Sønderby, Raiko, Maaløe, Sønderby & Winther, Ladder Variational Autoencoders, NeurIPS 2016.
  Tomczak & Welling, VAE with a VampPrior, AISTATS 2018.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import losses
from jaxae import nn as jnn

INFERENCE = ('bottom_up', 'top_down')
PRIORS = ('gaussian', 'mixture', 'vamp')
UPPER_NORMS = ('none', 'layer', 'weight')


class Stack(nn.Module):
  """`[..., n] -> ([..., out], [..., out])`: dense hidden layers of `widths` (ReLU, after `norm`), then a linear
  layer to a Gaussian's mean and log-variance, each of size `out`.

  `norm`: 'none', 'layer' (layer norm of each hidden layer, per example) or 'weight' (weight normalisation of
  every dense layer, Salimans & Kingma 2016). Both keep each example's bound independent of the others (batch
  norm would not).
  """

  widths: Sequence[int]
  out: int
  norm: str = 'none'
  precision: str = 'f32'
  kernels: str = 'xla'

  def _dense(self, features: int) -> nn.Module:
    layer = jnn.dense(features, self.precision, kernels=self.kernels)
    return nn.WeightNorm(layer) if self.norm == 'weight' else layer

  @nn.compact
  def __call__(self, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    for width in self.widths:
      h = self._dense(width)(h)
      h = nn.LayerNorm()(h.astype(jnp.float32)) if self.norm == 'layer' else h
      h = nn.relu(h)
    mean, logvar = jnp.split(self._dense(2 * self.out)(h).astype(jnp.float32), 2, axis=-1)
    return mean, logvar


def merge(mean_hat, logvar_hat, mean_p, logvar_p):
  """The Ladder VAE's precision-weighted merge of two diagonal Gaussians: `(mean, logvar)` of the normalised
  product N(mean_hat, var_hat) N(mean_p, var_p); precisions add, means are precision-weighted."""
  logvar = -jnp.logaddexp(-logvar_hat, -logvar_p)
  mean = (mean_hat * jnp.exp(-logvar_hat) + mean_p * jnp.exp(-logvar_p)) * jnp.exp(logvar)
  return mean, logvar


def mixture_log_prob(z: jax.Array, means: jax.Array, logvars: jax.Array, log_weights: jax.Array) -> jax.Array:
  """log sum_c w_c N(z; means_c, exp(logvars_c)) of codes `z: [..., d]` under C components (`means, logvars:
  [C, d]`, `log_weights: [C]`, normalised): `[...]`.

  The squares are expanded, (z - m)^2 / v = z^2 / v - 2 z m / v + m^2 / v, so the N x C x d work is three
  matmuls instead of an [N, C, d] broadcast (80x faster on a 2-core CPU for N = 128, C = 500, d = 50, with its
  gradient; the same numbers to 2e-5 nats).
  """
  flat = z.reshape(-1, z.shape[-1])
  precision = jnp.exp(-logvars)  # [C, d]
  dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)  # float32 on every backend: the terms
  square = (dot(jnp.square(flat), precision.T) - 2.0 * dot(flat, (means * precision).T)  # cancel, TF32 would not
            + jnp.sum(jnp.square(means) * precision, axis=-1)[None])  # [N, C]
  log_normal = -0.5 * (square + jnp.sum(logvars, axis=-1)[None] + z.shape[-1] * jnp.log(2.0 * jnp.pi))
  return jax.nn.logsumexp(log_normal + log_weights[None], axis=-1).reshape(z.shape[:-1])


def sample_gaussian(key: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) of `mean`'s shape."""
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)


class Hierarchy(nn.Module):
  """The hierarchical VAE's networks (module docstring). Codes are `[K, B, d_i]` for K draws of B examples.

  Attributes:
    encoder, decoder: the x <-> z_1 networks (`jaxae.nn.make_encoder(..., 2 * d_1)`, `make_decoder`).
    sizes: `(d_1, ..., d_L)`, the layers' sizes from the data up.
    widths: `(w_2, ..., w_L)`: the stacks between layer i - 1 and i (both directions) have `depth` hidden layers
      of width w_i.
    inference: 'bottom_up' or 'top_down'.
    prior: 'gaussian', 'mixture' or 'vamp' (of z_L); `components` their number C.
    image_shape: `(H, W, C)` (the VampPrior's pseudo-inputs have it).
  """

  encoder: nn.Module
  decoder: nn.Module
  sizes: Sequence[int]
  widths: Sequence[int]
  depth: int
  inference: str
  prior: str
  components: int
  image_shape: Sequence[int]
  norm: str = 'none'
  precision: str = 'f32'
  kernels: str = 'xla'

  def setup(self):
    stack = lambda i, out: Stack((self.widths[i - 1],) * self.depth, out, self.norm, self.precision,  # noqa: E731
                                 self.kernels)
    self.up = [stack(i, self.sizes[i]) for i in range(1, len(self.sizes))]  # layer i from below
    self.down = [stack(i + 1, self.sizes[i]) for i in range(len(self.sizes) - 1)]  # p(z_i | z_{i+1})
    d, c = self.sizes[-1], self.components
    if self.prior == 'mixture':  # means spread as N(0, I) draws, unit variances, equal weights
      self.prior_means = self.param('prior_means', nn.initializers.normal(1.0), (c, d))
      self.prior_logvars = self.param('prior_logvars', nn.initializers.zeros, (c, d))
      self.prior_logits = self.param('prior_logits', nn.initializers.zeros, (c,))
    elif self.prior == 'vamp':  # pseudo-inputs sigmoid(u), grey (about 0.5) at the start
      self.pseudo_inputs = self.param('pseudo_inputs', nn.initializers.normal(0.01), (c, *self.image_shape))

  def __call__(self, x: jax.Array, train: bool = False):
    """Initialises every parameter: one draw and the prior's log-density of its top code."""
    draws = self.draw(x, jax.random.key(0), 1)
    return draws['logits'], self.prior_log_prob(draws['z'][-1])

  def encode(self, x: jax.Array, train: bool = False):
    """q(z_1 | x)'s encoder Gaussian `(mean, logvar)`, each `[B, d_1]` (for top-down inference, before its merge
    with the layers above)."""
    return tuple(jnp.split(self.encoder(x, train), 2, axis=-1))

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """`[N, d_1] -> [N, H, W, C]` decoder outputs (logits or means) of p(x | z_1)."""
    return self.decoder(z, train)

  def _decode_draws(self, z1: jax.Array) -> jax.Array:
    return self.decode(z1.reshape(-1, z1.shape[-1])).reshape(*z1.shape[:-1], *self.image_shape)

  def draw(self, x: jax.Array, key: jax.Array, num_samples: int) -> dict:
    """K = `num_samples` draws z ~ q(z | x) of images `x: [B, H, W, C]` from `key`, and their decoding: `codes`'
    dict and `logits` `[K, B, H, W, C]`."""
    d = self.codes(x, key, num_samples)
    return {**d, 'logits': self._decode_draws(d['z'][0])}

  def codes(self, x: jax.Array, key: jax.Array, num_samples: int, stochastic: bool = True) -> dict:
    """K = `num_samples` draws z ~ q(z | x) of images `x: [B, H, W, C]` from `key`, not decoded.

    Returns `{'z', 'q', 'p'}`: `z[i]` the codes of layer i `[K, B, d_i]`; `q[i]` its posterior `(mean, logvar)`;
    `p[i]` its conditional prior p(z_i | z_{i+1}) for i < L - 1. With `stochastic=False` every z is its Gaussian's
    mean (the posterior-mean pass, `[1, B, d_i]`).
    """
    keys = jax.random.split(key, len(self.sizes))

    def pick(i, mean, logvar):  # [1 or K, B, d] -> [K, B, d]
      if not stochastic:
        return mean
      eps = jax.random.normal(keys[i], (num_samples, *mean.shape[1:]), mean.dtype)
      return mean + jnp.exp(0.5 * logvar) * eps

    first = tuple(a[None] for a in self.encode(x))
    if self.inference == 'bottom_up':
      q, z = [first], [pick(0, *first)]
      for i, up in enumerate(self.up, start=1):
        q.append(up(z[-1]))
        z.append(pick(i, *q[-1]))
      p = [down(z[i + 1]) for i, down in enumerate(self.down)]
    else:
      hats = self._upward(first)
      q, z, p = [hats[-1]], [pick(len(hats) - 1, *hats[-1])], []
      for i in reversed(range(len(self.down))):
        p.insert(0, self.down[i](z[0]))
        q.insert(0, merge(*hats[i], *p[0]))
        z.insert(0, pick(i, *q[0]))
    return {'z': z, 'q': q, 'p': p}

  def _upward(self, first) -> list:
    """Top-down inference's deterministic upward pass: each layer's N(mu_hat, var_hat) from the one below."""
    hats = [first]
    for up in self.up:
      hats.append(up(jnp.concatenate(hats[-1], axis=-1)))
    return hats

  def top_posterior(self, x: jax.Array):
    """`(mean, logvar)` of q(z_L | x) through the posterior-mean pass, each `[N, d_L]` (the VampPrior's
    components at pseudo-inputs `x`)."""
    first = self.encode(x)
    if self.inference == 'top_down':
      return self._upward(first)[-1]
    mean_logvar = first
    for up in self.up:
      mean_logvar = up(mean_logvar[0])
    return mean_logvar

  def prior_components(self):
    """The top prior's mixture `(means [C, d_L], logvars [C, d_L], log_weights [C])` ('mixture', 'vamp')."""
    if self.prior == 'mixture':
      return self.prior_means, self.prior_logvars, jax.nn.log_softmax(self.prior_logits)
    means, logvars = self.top_posterior(jax.nn.sigmoid(self.pseudo_inputs))
    return means, logvars, jnp.full((self.components,), -jnp.log(self.components))

  def prior_log_prob(self, z: jax.Array) -> jax.Array:
    """log p(z_L) of top codes `z: [..., d_L]`: `[...]`."""
    if self.prior == 'gaussian':
      return losses.gaussian_log_density(z, jnp.zeros((), z.dtype), jnp.zeros((), z.dtype))
    return mixture_log_prob(z, *self.prior_components())

  def prior_sample(self, key: jax.Array, n: int) -> jax.Array:
    """`n` draws of z_L ~ p(z_L): `[n, d_L]`."""
    if self.prior == 'gaussian':
      return jax.random.normal(key, (n, self.sizes[-1]))
    k_component, k_noise = jax.random.split(key)
    means, logvars, log_weights = self.prior_components()
    c = jax.random.categorical(k_component, log_weights, shape=(n,))
    return sample_gaussian(k_noise, means[c], logvars[c])

  def generate(self, z_top: jax.Array, key: jax.Array, level: int = 0) -> jax.Array:
    """Decoder outputs `[n, H, W, C]` from top codes `z_top: [n, d_L]` down the generative model: layers i >=
    `level` (counted from 0 at z_1) are drawn from p(z_i | z_{i+1}), the ones below take its mean."""
    z = z_top
    for i in reversed(range(len(self.down))):
      mean, logvar = self.down[i](z)
      z = sample_gaussian(jax.random.fold_in(key, i), mean, logvar) if i >= level else mean
    return self.decode(z)
