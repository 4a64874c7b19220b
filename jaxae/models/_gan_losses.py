"""The two players' losses of the `gan` family (and its presets), per example, from logits; `gan` re-exports them.

D reads images in [0, 1] centred to [-1, 1]; G's tanh output is rescaled to [0, 1] (`to_image`). How a
conditional D uses the label `y` (one-hot `[B, K]`) follows its network's outputs and `projection`:

- one output (Mirza & Osindero 2014): `y` joins the image at D's input (`jaxae.conditioning.join_image`);
- 1 + K outputs, `projection=False` (AC-GAN, Odena et al. 2017): D sees the image alone; outputs 1..K are class
  logits, whose cross-entropy D pays on real and fake images and G on its fakes (`class_loss`);
- 1 + K outputs, `projection=True` (Miyato & Koyama 2018): D sees the image alone and its score is
  `psi(phi(x)) + y^T V phi(x)`: output 0 plus the label's own output (`V`'s rows are the last dense layer's).

References:
  Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014.
  Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017.
  Odena, Olah & Shlens, Conditional Image Synthesis with Auxiliary Classifier GANs, ICML 2017.
  Miyato & Koyama, cGANs with Projection Discriminator, ICLR 2018.
"""

import jax
import jax.numpy as jnp
import optax

from jaxae import conditioning, losses
from jaxae import nn as jnn


def to_image(out):
  """G's pre-activation `[B, H, W, C]` to images in [0, 1]."""
  return 0.5 * (jnp.tanh(out) + 1.0)


def forward(state, part, v, key):
  """`(out, state)`: `part` on `v` in training mode given a dropout key (running averages updated), else not."""
  if key is None:
    return state.apply(part, v), state
  return state.run(part, v, rngs={'dropout': key})


def critic_outputs(state, x, y, key, projection=False):
  """`(scores [B], class logits [B, K] or None, state)`: D on images `x` in [0, 1] (labels `y` as the module
  docstring says; class logits only for an AC-GAN)."""
  net = state.nets['discriminator']
  head = net.out_dim > 1  # an AC-GAN's or a projection D's K more outputs
  x = conditioning.join_image(2.0 * x - 1.0, None if head else y, 'conv' if isinstance(net, jnn.ConvEncoder) else 'mlp')
  out, state = forward(state, 'discriminator', x, key)
  if projection:
    return out[:, 0] + jnp.sum(y * out[:, 1:], axis=-1), None, state
  return out[:, 0], out[:, 1:] if head else None, state


def class_loss(logits, y):
  """An AC-GAN's class cross-entropy `[B]` of D's class logits against one-hot `y`; 0 for other GANs."""
  return 0.0 if logits is None else optax.softmax_cross_entropy(logits, y)


def discriminator_terms(state, x, z, eps, loss, gp_weight, dropout_key=None, y=None, projection=False,
                        real_label=1.0):
  """Per-example D loss `[B]`, its parts and the state: `(d_loss, {'d_real', 'd_fake'[, 'gp']}, state)`, real
  pairs with fake i; one-hot labels `y: [B, K]` (conditional) condition real i and fake i alike (an AC-GAN's
  loss adds D's class cross-entropy on both). `real_label`: the non-saturating D's target for real images (< 1:
  one-sided label smoothing, Salimans et al. 2016).

  With `dropout_key` (training), G and D run in training mode: D drops units, real and fake with independent
  masks, and batch norm normalises each batch (real, then fake) by its own statistics, as PyTorch's DCGAN does.
  """
  k_real, k_fake, k_gp = jax.random.split(dropout_key, 3) if dropout_key is not None else (None,) * 3
  fake, state = forward(state, 'generator', conditioning.join_code(z, y), k_fake)
  fake = to_image(fake)
  real_out, real_class, state = critic_outputs(state, x, y, k_real, projection)
  fake_out, fake_class, state = critic_outputs(state, fake, y, k_fake, projection)
  aux = class_loss(real_class, y) + class_loss(fake_class, y)
  if loss == 'nonsaturating':
    return (losses.gan_real_loss(real_out, real_label) + losses.gan_fake_loss(fake_out) + aux,
            {'d_real': jax.nn.sigmoid(real_out), 'd_fake': jax.nn.sigmoid(fake_out)}, state)
  gp = losses.gradient_penalty(lambda v: critic_outputs(state, v, y, k_gp, projection)[0], x, fake, eps)
  return fake_out - real_out + gp_weight * gp + aux, {'d_real': real_out, 'd_fake': fake_out, 'gp': gp}, state


def discriminator_loss(state, x, mask, z, eps, loss, gp_weight, dropout_key=None, y=None, projection=False,
                       real_label=1.0):
  """One D update's loss, the masked mean of `discriminator_terms`: `(d_loss, (metrics, state))`."""
  d_loss, parts, state = discriminator_terms(state, x, z, eps, loss, gp_weight, dropout_key, y, projection,
                                            real_label)
  d_loss = losses.masked_mean(d_loss, mask)
  return d_loss, ({'d_loss': d_loss, **{k: losses.masked_mean(v, mask) for k, v in parts.items()}}, state)


def generator_terms(state, z, loss, dropout_key=None, y=None, projection=False):
  """Per-example G loss `[B]` (`-log D(G(z))` or `-f(G(z))`; of `G(z, y)` judged with `y`) and the state."""
  fake, state = forward(state, 'generator', conditioning.join_code(z, y), dropout_key)
  out, logits, state = critic_outputs(state, to_image(fake), y, dropout_key, projection)
  return (losses.gan_real_loss(out) if loss == 'nonsaturating' else -out) + class_loss(logits, y), state


def generator_loss(state, z, loss, dropout_key=None, y=None, projection=False):
  """The generator update's loss: `(g_loss, (metrics, state))` for `steps.phase_step`."""
  g_terms, state = generator_terms(state, z, loss, dropout_key, y, projection)
  g_loss = jnp.mean(g_terms)
  return g_loss, ({'g_loss': g_loss}, state)


def draws(key, x, latent_dim):
  """The step's noise: `(z [B, latent_dim], eps [B, 1, 1, 1], dropout key)`."""
  k_z, k_eps, k_drop = jax.random.split(key, 3)
  eps = jax.random.uniform(k_eps, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jax.random.normal(k_z, (x.shape[0], latent_dim)), eps, k_drop
