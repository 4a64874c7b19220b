"""Conditional VAE (Sohn et al. 2015): the VAE with the class label given to the encoder and the decoder.

q(z|x, y) = N(mean, diag(exp(logvar))), prior p(z) = N(0, I) independent of y, decoder p(x|z, y) Bernoulli
(logits) or unit Gaussian; the one-hot label joins the image at the encoder's input and the code at the
decoder's (`jaxae.conditioning`). Training minimises the negative beta-ELBO of log p(x|y),
`rec + beta * KL(q(z|x, y) || N(0, I))`. Since the label carries the class, z is left to carry the style:
`sample(state, key, n, labels)` decodes z ~ N(0, I) with the labels asked for, and the class grid shows one z
per row across the classes.

References:
  Sohn, Lee & Yan, Learning Structured Output Representation using Deep Conditional Generative Models,
  NeurIPS 2015.
  Kingma, Rezende, Mohamed & Welling, Semi-Supervised Learning with Deep Generative Models (M2's p(x|y, z)),
  NeurIPS 2014.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import checks, conditioning, losses, steps
from jaxae import nn as jnn
from jaxae.models import vae

HEADLINE = ('loss',)  # rec + beta * KL; with beta = 1 the negative ELBO of log p(x | y)
CAN = frozenset({'sample', 'stochastic', 'gaussian_prior', 'conditional'})

KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    beta='weight of the KL term (1: the ELBO)',
    num_classes='classes K (labels 0..K-1 join the encoder\'s and the decoder\'s inputs)',
)


def defaults() -> dict:
  return dict(arch='mlp', hidden=(512, 256), conv_features=(32, 64), latent_dim=16, likelihood='bernoulli',
              beta=1.0, norm='none', num_classes=10)


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS}, non_negative=('beta',), positive=('num_classes',))
  checks.require(config['norm'] != 'batch', 'norm=batch would make each ELBO depend on the other examples of its '
                 'batch; set norm=layer (per example) or none')


class CVAE(nn.Module):
  """Gaussian encoder of `(x, y)` and a decoder of `(z, y)`; `y` one-hot `[B, K]`."""

  encoder: nn.Module
  decoder: nn.Module
  arch: str

  def encode(self, x: jax.Array, y: jax.Array, train: bool = False):
    """`[B, H, W, C], [B, K] -> (mean, logvar)`, each `[B, latent_dim]`."""
    return tuple(jnp.split(self.encoder(conditioning.join_image(x, y, self.arch), train), 2, axis=-1))

  def decode(self, z: jax.Array, y: jax.Array, train: bool = False) -> jax.Array:
    """`[B, latent_dim], [B, K] -> [B, H, W, C]` decoder outputs (logits or means)."""
    return self.decoder(conditioning.join_code(z, y), train)

  def __call__(self, x: jax.Array, y: jax.Array, train: bool = False):
    """`(out, mean, logvar)`, out decoded from one z ~ q(z|x, y) (the 'latent' stream)."""
    mean, logvar = self.encode(x, y, train)
    return self.decode(vae.reparameterize(self.make_rng('latent'), mean, logvar), y, train), mean, logvar


def make_network(config, image_shape) -> CVAE:
  """The conditional VAE of a resolved `config` for images of shape `image_shape` `(H, W, C)`."""
  checks.resolved(config, defaults(), 'cvae', 'make_network')
  arch, hidden, conv = config['arch'], config['hidden'], config['conv_features']
  kw = dict(norm=config['norm'], **jnn.compute(config))
  return CVAE(jnn.make_encoder(arch, 2 * config['latent_dim'], hidden, conv, **kw),
              jnn.make_decoder(arch, image_shape, hidden, conv, **kw), arch)


def create_state(key: jax.Array, config, sample_batch) -> steps.TrainState:
  x = sample_batch['image'][:1]
  net = make_network(config, x.shape[1:])
  y = conditioning.one_hot(jnp.zeros(1, jnp.int32), config['num_classes'])
  return steps.create_train_state(net.apply, net.init({'params': key, 'latent': key}, x, y), config)


def negative_elbo_terms(params, apply_fn, x: jax.Array, y: jax.Array, key: jax.Array, *args,
                        likelihood=checks.UNSET) -> tuple[jax.Array, jax.Array]:
  """Per-example `(rec, kl)` of -log p(x|y), each `[B]`, with one z ~ q(z|x, y) drawn from `key`; `x: [B, H, W,
  C]`, `y: [B, K]` one-hot labels; `likelihood` a name or a `jaxae.likelihoods.Likelihood`."""
  likelihood = checks.keyword_only('negative_elbo_terms', 'likelihood', args, likelihood)
  losses.check_images('x', x)
  out, mean, logvar = apply_fn({'params': params}, x, y, rngs={'latent': key})
  return losses.reconstruction_nll(out, x, likelihood), losses.gaussian_kl(mean, logvar)


def loss_fn(params, apply_fn, batch, key, *, likelihood, beta, num_classes):
  """Negative beta-ELBO of log p(x|y) averaged over the batch; metrics loss, rec, kl and -ELBO ('nelbo')."""
  mask = batch.get('mask')
  y = conditioning.one_hot(batch['label'], num_classes)
  rec, kl = negative_elbo_terms(params, apply_fn, batch['image'], y, key, likelihood=likelihood)
  rec, kl = losses.masked_mean(rec, mask), losses.masked_mean(kl, mask)
  return rec + beta * kl, {'loss': rec + beta * kl, 'rec': rec, 'kl': kl, 'nelbo': rec + kl}


def train_step(state, batch, key, *, likelihood, beta, num_classes):
  """`(state, batch, key) -> (state, metrics of loss_fn)`; key feeds z, the batch's labels condition."""
  return steps.gradient_step(state, loss_fn, batch, key, likelihood=likelihood, beta=beta, num_classes=num_classes)


def eval_step(state, batch, key, *, likelihood, beta, num_classes):
  """Sums of loss, rec, kl and -ELBO of log p(x|y) (nats) over the batch, and `count`."""
  x, mask = batch['image'], batch.get('mask')
  y = conditioning.one_hot(batch['label'], num_classes)
  rec, kl = negative_elbo_terms(state.params, state.apply_fn, x, y, key, likelihood=likelihood)
  return {'loss': losses.masked_sum(rec + beta * kl, mask), 'rec': losses.masked_sum(rec, mask),
          'kl': losses.masked_sum(kl, mask), 'nelbo': losses.masked_sum(rec + kl, mask),
          'count': losses.masked_count(batch)}


def encode_labelled(state, x: jax.Array, labels: jax.Array, *, num_classes) -> jax.Array:
  """Posterior means of q(z|x, y): `[B, latent_dim]`, for images `x` with their `labels: [B]`."""
  y = conditioning.one_hot(labels, num_classes)
  return state.apply_fn({'params': state.params}, x, y, method='encode')[0]


def decode_labelled(state, z: jax.Array, labels: jax.Array, *, likelihood, num_classes) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1]: the decoder mean at `(z, y)`."""
  out = state.apply_fn({'params': state.params}, z, conditioning.one_hot(labels, num_classes), method='decode')
  return losses.decoder_mean(out, likelihood)


def sample(state, key: jax.Array, n: int, labels: jax.Array | None = None, *, likelihood, latent_dim,
           num_classes) -> jax.Array:
  """`n` images decoded from z ~ N(0, I) with the requested `labels: [n]` (default: every class in turn)."""
  labels = conditioning.balanced(n, num_classes) if labels is None else labels
  return decode_labelled(state, jax.random.normal(key, (n, latent_dim)), labels, likelihood=likelihood,
                num_classes=num_classes)


def eval_images(state, batch, key, *, likelihood, latent_dim, num_classes):
  """Reconstructions (with the images' labels), samples (every class in turn) and the class x style grid from
  a fixed prior draw."""
  x = batch['image']
  z, grid_labels = conditioning.style_grid(jax.random.normal(key, (num_classes, latent_dim)), num_classes)
  hp = dict(likelihood=likelihood, num_classes=num_classes)
  images = {'samples': sample(state, key, x.shape[0], latent_dim=latent_dim, **hp),
            'class_grid': decode_labelled(state, z, grid_labels, **hp)}
  if 'label' in batch:
    z = encode_labelled(state, x, batch['label'], num_classes=num_classes)
    images['reconstructions'] = decode_labelled(state, z, batch['label'], **hp)
  return images
