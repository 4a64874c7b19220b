"""Adversarial autoencoder: a discriminator on codes pulls q(z) onto a chosen prior p(z).

Deterministic encoder q(z|x) = delta(f(x)) and decoder g; an MLP discriminator
D on codes. One composite training step runs the paper's phases in order,
each with its own optimizer state:

1. reconstruction: encoder and decoder minimise the reconstruction NLL of g(f(x));
2. regularisation, discriminator: D learns prior samples (real) from codes f(x) (fake);
3. regularisation, generator: the encoder learns to fool D (non-saturating
   loss `-log D(f(x))`, weighted by `adv_weight`).

Generation decodes prior samples. With `num_classes = K > 0` (the `saae` preset) it is the paper's
supervised AAE (Sec. 5): the one-hot label joins the code at the decoder's input, so the code is left to carry
the style (`jaxae.conditioning`). Here the code discriminator sees the label too, `D(z, y)`, which matches
q(z|y) to p(z) for every class: a code independent of the class, which the paper's grids assume (with D on z
alone the aggregate q(z) can match p(z) while each class keeps its own region, and the decoder then draws the
class of the region, not the one asked for). Priors: `jaxae.priors` (gaussian, a mixture
of 10 2-D Gaussians, uniform). Every training forward pass runs in training mode
(`state.run`): with `norm=batch` the conv encoder and decoder normalise each batch and
keep running averages, which evaluation, codes and samples use.

References:
  Makhzani, Shlens, Jaitly, Goodfellow & Frey, Adversarial Autoencoders,
  ICLR workshop 2016, Sec. 2 (and Sec. 5, the supervised AAE).
"""

import jax
import jax.numpy as jnp

from jaxae import checks, conditioning, losses, models, priors, steps
from jaxae import nn as jnn

HEADLINE = ('rec', 'd_loss')  # reconstruction NLL (nats per example) and the code discriminator's loss
CAN = frozenset({'encode', 'sample', 'stochastic', 'prior_density'})  # a Gaussian prior is a config choice
PHASES = {'reconstruction': ('encoder', 'decoder'), 'discriminator': ('discriminator',), 'generator': ('encoder',)}


KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    prior='p(z): gaussian, mixture (10 2-D Gaussians on a circle) or uniform on [-1, 1]^d',
    disc_hidden='code discriminator hidden widths', adv_weight='weight of the encoder adversarial loss',
    num_classes='classes K of the supervised AAE (0: unsupervised; labels 0..K-1 join the decoder\'s input)',
)


def defaults() -> dict:
  return dict(
      arch='mlp', hidden=(512, 256), conv_features=(32, 64), latent_dim=8, likelihood='bernoulli',
      prior='gaussian', disc_hidden=(256, 256), adv_weight=1.0, norm='none', num_classes=0,
  )


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS}, non_negative=('adv_weight', 'num_classes'))
  conditional = models.can(config['model'], 'conditional')
  checks.require(conditional == (config['num_classes'] > 0), f"num_classes={config['num_classes']}: " + (
      'a supervised AAE needs the number of classes (> 0)' if conditional else
      'labels given to the decoder make the supervised AAE: train --model saae instead, or set num_classes=0'))
  priors.check(config['prior'], config['latent_dim'])


def create_state(key: jax.Array, config, sample_batch) -> steps.PlayerState:
  x = sample_batch['image'][:1]
  arch, hidden, conv, compute = config['arch'], config['hidden'], config['conv_features'], jnn.compute(config)
  nets = {
      'encoder': jnn.make_encoder(arch, config['latent_dim'], hidden, conv, norm=config['norm'], **compute),
      'decoder': jnn.make_decoder(arch, x.shape[1:], hidden, conv, norm=config['norm'], **compute),
      'discriminator': jnn.MLPEncoder(tuple(config['disc_hidden']), 1, activation=jnn.leaky_relu, **compute),
  }
  z = jnp.zeros((1, config['latent_dim']))
  y = conditioning.one_hot(jnp.zeros(1, jnp.int32), config['num_classes'])
  inputs = {'encoder': x, 'decoder': conditioning.join_code(z, y), 'discriminator': conditioning.join_code(z, y)}
  return steps.player_state(key, nets, inputs, config, PHASES)


def reconstruction_loss(state, x, mask, likelihood, y=None):
  """Phase 1: mean reconstruction NLL of `g(f(x))` (`g(f(x), y)` given one-hot labels `y: [B, K]`):
  `(rec, (metrics, state))` for `steps.phase_step`."""
  z, state = state.run('encoder', x)
  out, state = state.run('decoder', conditioning.join_code(z, y))
  rec = losses.masked_mean(losses.reconstruction_nll(out, x, likelihood), mask)
  return rec, ({'rec': rec}, state)


def _critic(state, z, y):
  """`D(z)` logits `[B]` (`D(z, y)` given one-hot labels `y: [B, K]`)."""
  return state.apply('discriminator', conditioning.join_code(z, y))[:, 0]


def discriminator_logits(state, x, z_prior, y=None):
  """`(D(z_prior), D(f(x)))` logits, each `[B]`, in evaluation mode."""
  return _critic(state, z_prior, y), _critic(state, state.apply('encoder', x), y)


def discriminator_loss(state, x, z_prior, mask, y=None):
  """Phase 2: D's cross-entropy, prior samples real and codes fake; also the mean D on each."""
  codes, state = state.run('encoder', x)
  real, fake = _critic(state, z_prior, y), _critic(state, codes, y)
  loss = losses.masked_mean(losses.gan_real_loss(real) + losses.gan_fake_loss(fake), mask)
  return loss, ({'d_loss': loss, 'd_real': losses.masked_mean(jax.nn.sigmoid(real), mask),
                 'd_fake': losses.masked_mean(jax.nn.sigmoid(fake), mask)}, state)


def generator_loss(state, x, mask, adv_weight, y=None):
  """Phase 3: the encoder's non-saturating loss `-log D(f(x))`, times `adv_weight`."""
  codes, state = state.run('encoder', x)
  g_loss = losses.masked_mean(losses.gan_real_loss(_critic(state, codes, y)), mask)
  return adv_weight * g_loss, ({'g_loss': g_loss}, state)


def train_step(state, batch, key, *, likelihood, prior, latent_dim, adv_weight, num_classes):
  """`(state, batch, key) -> (state, {'rec', 'd_loss', 'd_real', 'd_fake', 'g_loss'})`; key draws z ~ p(z); a
  supervised AAE's decoder reads the batch's labels."""
  x, mask = batch['image'], batch.get('mask')
  y = conditioning.one_hot(batch['label'], num_classes) if num_classes else None
  state, rec = steps.phase_step(state, 'reconstruction', reconstruction_loss, x, mask, likelihood, y)
  z_prior = priors.sample(key, x.shape[0], latent_dim, prior)
  state, disc = steps.phase_step(state, 'discriminator', discriminator_loss, x, z_prior, mask, y)
  state, gen = steps.phase_step(state, 'generator', generator_loss, x, mask, adv_weight, y)
  return state.replace(step=state.step + 1), {**rec, **disc, **gen}


def eval_step(state, batch, key, *, likelihood, prior, latent_dim, num_classes):
  """Sums over the batch of rec, d_loss, d_real, d_fake and g_loss, and `count`; key draws the prior batch."""
  x, mask = batch['image'], batch.get('mask')
  labels = batch['label'] if num_classes else None
  rec = losses.reconstruction_nll(_decoder(state, encode(state, x), labels, num_classes), x, likelihood)
  real, fake = discriminator_logits(state, x, priors.sample(key, x.shape[0], latent_dim, prior),
                                    conditioning.one_hot(labels, num_classes) if num_classes else None)
  per_example = {'rec': rec, 'd_loss': losses.gan_real_loss(real) + losses.gan_fake_loss(fake),
                 'd_real': jax.nn.sigmoid(real), 'd_fake': jax.nn.sigmoid(fake), 'g_loss': losses.gan_real_loss(fake)}
  return {**{k: losses.masked_sum(v, mask) for k, v in per_example.items()}, 'count': losses.masked_count(batch)}


def encode(state, x: jax.Array) -> jax.Array:
  """Codes `f(x)`: `[B, latent_dim]`."""
  return state.apply('encoder', x)


def decode(state, z: jax.Array, *, likelihood) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1] (decoder means) from codes `z` (the unsupervised AAE)."""
  return losses.decoder_mean(state.apply('decoder', z), likelihood)


def decode_labelled(state, z: jax.Array, labels: jax.Array | None, *, likelihood, num_classes) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1] (decoder means) from style codes `z` and `labels: [B]` (the supervised
  AAE; `labels` None when `num_classes` is 0)."""
  return losses.decoder_mean(_decoder(state, z, labels, num_classes), likelihood)


def _decoder(state, z, labels, num_classes):
  """The decoder's outputs (logits or means) at `z` (joined with the one-hot `labels` if `num_classes`)."""
  return state.apply('decoder', conditioning.join_code(z, conditioning.one_hot(labels, num_classes)))


def sample(state, key: jax.Array, n: int, labels: jax.Array | None = None, *, likelihood, prior, latent_dim,
           num_classes) -> jax.Array:
  """`n` images decoded from z ~ p(z): `[n, H, W, C]`; the supervised AAE's of the requested `labels: [n]`
  (default: every class in turn)."""
  if num_classes and labels is None:
    labels = conditioning.balanced(n, num_classes)
  return decode_labelled(state, priors.sample(key, n, latent_dim, prior), labels, likelihood=likelihood,
                         num_classes=num_classes)


def prior_log_density(z: jax.Array, *, prior) -> jax.Array:
  """`log p(z)`, `[N]`, for the codes figure."""
  return priors.log_density(z, prior)


def eval_images(state, batch, key, *, likelihood, prior, latent_dim, num_classes):
  """Reconstructions of the inputs (with their labels, for the supervised AAE), samples from a fixed prior
  draw (`key`), and for the supervised AAE the class x style grid."""
  x, hp = batch['image'], dict(likelihood=likelihood, num_classes=num_classes)
  labels = batch['label'] if num_classes else None
  images = {'reconstructions': decode_labelled(state, encode(state, x), labels, **hp),
            'samples': sample(state, key, x.shape[0], prior=prior, latent_dim=latent_dim, **hp)}
  if num_classes:
    z = priors.sample(key, num_classes, latent_dim, prior)
    images['class_grid'] = decode_labelled(state, *conditioning.style_grid(z, num_classes), **hp)
  return images
