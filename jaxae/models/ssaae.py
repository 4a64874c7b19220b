"""Semi-supervised adversarial autoencoder (Makhzani et al., Sec. 6): a classifier learned mostly from
unlabelled images.

The encoder has two heads: `q(y|x)`, a softmax over K classes, and the style `z = q(z|x)` (deterministic,
`latent_dim`). The decoder rebuilds x from `(q(y|x), z)`. Two discriminators regularise the codes: one pulls
`q(y|x)` onto a categorical prior (one-hot vectors of uniformly drawn classes), the other pulls z onto
N(0, I). One composite step runs the paper's phases in order, each with its own optimizer state:

1. reconstruction: encoder and decoder minimise the reconstruction NLL;
2. regularisation, discriminators: each learns prior samples (real) from codes (fake);
3. regularisation, generator: the encoder fools both (non-saturating losses);
4. semi-supervised classification: the encoder minimises the cross-entropy of `q(y|x)` on a labelled
   mini-batch. With `labels_per_class` = N the loop gives every batch one: `labelled_image` /
   `labelled_label`, a labelled partner per image (`jaxae.data.labelled_partners`), as the paper trains on a
   labelled mini-batch each step (with 100 labels, a batch's own labelled images would number about one);
   with every image labelled, the batch itself.

The held-out `error` is the fraction of held-out images whose `argmax q(y|x)` is not their label (in training:
of the labelled mini-batch); `jaxae.evaluation.semisupervised` compares it with classifiers fitted on the
labelled images alone.

References:
  Makhzani, Shlens, Jaitly, Goodfellow & Frey, Adversarial Autoencoders, ICLR workshop 2016, Sec. 6.
"""

import jax
import jax.numpy as jnp
import optax

from jaxae import checks, conditioning, losses, priors, steps
from jaxae import nn as jnn
from jaxae.data import to_float

HEADLINE = ('rec', 'error')  # reconstruction NLL (nats), and the classification error of q(y|x)
CAN = frozenset({'sample', 'stochastic', 'classify'})
PHASES = {'reconstruction': ('encoder', 'decoder'), 'discriminators': ('d_cat', 'd_gauss'),
          'generator': ('encoder',), 'classification': ('encoder',)}

KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    num_classes='classes K of the categorical code q(y|x)', disc_hidden='both code discriminators\' hidden widths',
    adv_weight='weight of the encoder\'s adversarial losses', ce_weight='weight of the labelled cross-entropy',
)


def defaults() -> dict:
  return dict(arch='mlp', hidden=(1000, 1000), conv_features=(32, 64), latent_dim=10, likelihood='bernoulli',
              disc_hidden=(1000, 1000), adv_weight=1.0, ce_weight=1.0, num_classes=10, norm='none')


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS}, non_negative=('adv_weight', 'ce_weight'),
               positive=('num_classes',))


def create_state(key: jax.Array, config, sample_batch) -> steps.PlayerState:
  x = sample_batch['image'][:1]
  arch, hidden, conv, k, d = (config[n] for n in ('arch', 'hidden', 'conv_features', 'num_classes', 'latent_dim'))
  compute = jnn.compute(config)
  disc = lambda: jnn.MLPEncoder(tuple(config['disc_hidden']), 1, activation=jnn.leaky_relu, **compute)
  nets = {'encoder': jnn.make_encoder(arch, k + d, hidden, conv, norm=config['norm'], **compute),
          'decoder': jnn.make_decoder(arch, x.shape[1:], hidden, conv, norm=config['norm'], **compute),
          'd_cat': disc(), 'd_gauss': disc()}
  inputs = {'encoder': x, 'decoder': jnp.zeros((1, k + d)), 'd_cat': jnp.zeros((1, k)), 'd_gauss': jnp.zeros((1, d))}
  return steps.player_state(key, nets, inputs, config, PHASES)


def _codes(state, x, num_classes):
  """`((y_logits [B, K], z [B, d]), state)`: the encoder's two heads, training mode."""
  out, state = state.run('encoder', x)
  return (out[:, :num_classes], out[:, num_classes:]), state


def reconstruction_loss(state, x, mask, likelihood, num_classes):
  """Phase 1: mean reconstruction NLL of `g(q(y|x), z)`."""
  (logits, z), state = _codes(state, x, num_classes)
  out, state = state.run('decoder', conditioning.join_code(z, jax.nn.softmax(logits)))
  rec = losses.masked_mean(losses.reconstruction_nll(out, x, likelihood), mask)
  return rec, ({'rec': rec}, state)


def _logit(state, part, v):
  return state.apply(part, v)[:, 0]


def discriminator_loss(state, x, mask, y_prior, z_prior, num_classes):
  """Phase 2: both discriminators' cross-entropy, prior samples real and codes fake (summed)."""
  (logits, z), state = _codes(state, x, num_classes)
  terms = (losses.gan_real_loss(_logit(state, 'd_cat', y_prior)) + losses.gan_fake_loss(
      _logit(state, 'd_cat', jax.nn.softmax(logits))) + losses.gan_real_loss(_logit(state, 'd_gauss', z_prior))
           + losses.gan_fake_loss(_logit(state, 'd_gauss', z)))
  loss = losses.masked_mean(terms, mask)
  return loss, ({'d_loss': loss}, state)


def generator_loss(state, x, mask, adv_weight, num_classes):
  """Phase 3: the encoder's non-saturating losses `-log D_cat(q(y|x)) - log D_gauss(z)`, times `adv_weight`."""
  (logits, z), state = _codes(state, x, num_classes)
  g = losses.gan_real_loss(_logit(state, 'd_cat', jax.nn.softmax(logits))) + losses.gan_real_loss(
      _logit(state, 'd_gauss', z))
  g_loss = losses.masked_mean(g, mask)
  return adv_weight * g_loss, ({'g_loss': g_loss}, state)


def classification_loss(state, x, labels, mask, ce_weight, num_classes):
  """Phase 4: cross-entropy of `q(y|x)` on the labelled images `x` (label >= 0, mask > 0); also their error."""
  (logits, _), state = _codes(state, x, num_classes)
  labelled = (labels >= 0).astype(jnp.float32) * (1.0 if mask is None else mask)
  ce = losses.masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0)), labelled)
  error = losses.masked_mean((jnp.argmax(logits, -1) != labels).astype(jnp.float32), labelled)
  return ce_weight * ce, ({'ce': ce, 'error': error, 'labelled': jnp.sum(labelled)}, state)


def train_step(state, batch, key, *, likelihood, latent_dim, adv_weight, ce_weight, num_classes):
  """`(state, batch, key) -> (state, {'rec', 'd_loss', 'g_loss', 'ce', 'error', 'labelled'})`; key draws the
  priors' samples (classes uniform, z ~ N(0, I)); `error` and `ce` are over the labelled mini-batch (the batch's
  `labelled_image` / `labelled_label` `[B, ...]`, if it has them, else its own labelled images)."""
  x, mask = batch['image'], batch.get('mask')
  k_y, k_z = jax.random.split(key)
  state, rec = steps.phase_step(state, 'reconstruction', reconstruction_loss, x, mask, likelihood, num_classes)
  y_prior = conditioning.one_hot(jax.random.randint(k_y, (x.shape[0],), 0, num_classes), num_classes)
  z_prior = priors.sample(k_z, x.shape[0], latent_dim, 'gaussian')
  state, disc = steps.phase_step(state, 'discriminators', discriminator_loss, x, mask, y_prior, z_prior, num_classes)
  state, gen = steps.phase_step(state, 'generator', generator_loss, x, mask, adv_weight, num_classes)
  x_l, y_l = (to_float(batch['labelled_image']), batch['labelled_label']) if 'labelled_image' in batch else (
      x, batch['label'])
  state, clf = steps.phase_step(state, 'classification', classification_loss, x_l, y_l, mask, ce_weight,
                                num_classes)
  return state.replace(step=state.step + 1), {**rec, **disc, **gen, **clf}


def classify(state, x: jax.Array, *, num_classes) -> jax.Array:
  """`argmax q(y|x)`: `[B]` predicted classes."""
  return jnp.argmax(state.apply('encoder', x)[:, :num_classes], axis=-1)


def eval_step(state, batch, key, *, likelihood, num_classes):
  """Sums over the batch of rec and `error` (every held-out image is labelled), and `count`."""
  x, mask = batch['image'], batch.get('mask')
  out = state.apply('encoder', x)
  logits, z = out[:, :num_classes], out[:, num_classes:]
  rec = losses.reconstruction_nll(state.apply('decoder', conditioning.join_code(z, jax.nn.softmax(logits))), x,
                                  likelihood)
  error = (jnp.argmax(logits, -1) != batch['label']).astype(jnp.float32)
  return {'rec': losses.masked_sum(rec, mask), 'error': losses.masked_sum(error, mask),
          'count': losses.masked_count(batch)}


def generate(state, y: jax.Array | None, z: jax.Array, *, likelihood) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1] decoded from class vectors `y: [B, K]` (one-hot) and styles `z: [B, d]`."""
  return losses.decoder_mean(state.apply('decoder', conditioning.join_code(z, y)), likelihood)


def sample(state, key: jax.Array, n: int, *, likelihood, latent_dim, num_classes) -> jax.Array:
  """`n` images from the priors: a uniform class (one-hot) and z ~ N(0, I)."""
  k_y, k_z = jax.random.split(key)
  y = conditioning.one_hot(jax.random.randint(k_y, (n,), 0, num_classes), num_classes)
  return generate(state, y, jax.random.normal(k_z, (n, latent_dim)), likelihood=likelihood)


def eval_images(state, batch, key, *, likelihood, latent_dim, num_classes):
  """Samples from a fixed prior draw (`key`)."""
  return {'samples': sample(state, key, batch['image'].shape[0], likelihood=likelihood, latent_dim=latent_dim,
                            num_classes=num_classes)}
