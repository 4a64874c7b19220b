"""Generative adversarial networks: the MLP GAN, with DCGAN and WGAN-GP as presets.

A generator G maps z ~ N(0, I) through a tanh to images in [-1, 1], shown rescaled to [0, 1]; a discriminator
(critic) D maps images, centred to [-1, 1], to one logit (score) (with sigmoid outputs and [0, 1] inputs the MLP
GAN collapsed to one mode on MNIST here). One composite step: `n_critic` D updates (each with fresh z, on the
step's real batch), then `n_generator` G updates (each with fresh z), each player with its own optimizer state.

- `loss='nonsaturating'`: D minimises `-log D(x) - log(1 - D(G(z)))`, G `-log D(G(z))`, from logits
  (Goodfellow et al. 2014).
- `loss='wasserstein'`: the critic minimises `f(G(z)) - f(x) + gp_weight * GP`, the gradient penalty at random
  interpolates; G minimises `-f(G(z))` (Gulrajani et al. 2017).

`hidden` lists D's widths; G mirrors them (`(512, 256)`: D 784-512-256-1, G z-256-512-784, LeakyReLU 0.2 in
both; DCGAN: ReLU in G). D drops units with rate `d_dropout` while training (0.3, as common PyTorch MNIST
write-ups; 0 for WGAN-GP). With `ema_decay` > 0, samples come from a moving average of G's weights (Yazici et
al. 2019; `steps.update_average`). With `num_classes = K > 0` (the `cgan` and `cdcgan` presets) the GAN is
conditional (Mirza & Osindero 2014): the one-hot label joins z at G's input and the image at D's input
(`jaxae.conditioning`); D sees real images with their labels and fakes drawn for the same labels, so G learns
`p(x | y)`. With `aux_classifier` it is an AC-GAN instead (Odena et al. 2017), with `projection` a projection
discriminator (Miyato & Koyama 2018): D sees the image alone (the losses and heads: `_gan_losses`).
`arch='conv'` gives the DCGAN networks: stride-2 4x4 convs in D, transposed convs in G, normalised as `norm`
(G) and `d_norm` (D) say: `dcgan` uses batch norm in both, as Radford et al. (not in G's output layer nor D's
input layer); a WGAN-GP critic takes layer norm or none: its gradient penalty needs per-example outputs.

References:
  Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014.
  Radford, Metz & Chintala, Unsupervised Representation Learning with Deep Convolutional GANs, ICLR 2016.
  Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017.
  Mirza & Osindero, Conditional Generative Adversarial Nets, arXiv:1411.1784, 2014.
  Odena, Olah & Shlens, Conditional Image Synthesis with Auxiliary Classifier GANs, ICML 2017.
  Miyato & Koyama, cGANs with Projection Discriminator, ICLR 2018.
  Yazici et al., The Unusual Effectiveness of Averaging in GAN Training, ICLR 2019.
"""

import jax
import jax.numpy as jnp

from jaxae import checks, conditioning, losses, models, steps
from jaxae import nn as jnn
from jaxae.models._gan_losses import (
  critic_outputs,
  discriminator_loss,
  discriminator_terms,
  draws,
  generator_loss,
  generator_terms,
  to_image,
)

__all__ = ['CAN', 'HEADLINE', 'KEYS', 'LOSSES', 'create_state', 'critic', 'defaults', 'discriminator_loss',
           'discriminator_terms', 'draws', 'eval_images', 'eval_step', 'generate', 'generator_loss', 'generator_terms',
           'sample', 'train_step', 'validate']

HEADLINE = ('d_loss', 'g_loss')
CAN = frozenset({'sample', 'stochastic'})
LOSSES = ('nonsaturating', 'wasserstein')


KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    loss='nonsaturating (logits) or wasserstein (critic)', n_critic='critic updates per step',
    n_generator='generator updates per step, each with fresh z, after the critic\'s',
    gp_weight='gradient penalty weight lambda (0: none)', d_dropout='dropout rate in the discriminator',
    d_norm='the conv discriminator\'s normalisation (none, batch, layer; `norm` is the generator\'s)',
    num_classes='classes K of a conditional GAN (0: unconditional; labels 0..K-1 join G\'s and D\'s inputs)',
    init='initial weights: flax (its layers\' defaults) or dcgan (kernels N(0, 0.02), as Radford et al.)',
    aux_classifier='AC-GAN: D sees the image alone and predicts its class (a conditional GAN only)',
    ema_decay='decay of the generator weights\' moving average that samples are drawn from (0: none)',
    projection='projection discriminator: D sees the image alone, its score adds y^T V phi(x) (a conditional GAN only)',
    real_label='D\'s target for real images (non-saturating): 1, or below for one-sided label smoothing (0.9)',
)
INITS = ('flax', 'dcgan')


def defaults() -> dict:
  return dict(
      arch='mlp', hidden=(512, 256), conv_features=(64, 128), latent_dim=100, loss='nonsaturating', n_critic=1,
      n_generator=1, gp_weight=0.0, d_dropout=0.3, learning_rate=2e-4, adam_b1=0.5, norm='none', d_norm='none',
      init='flax', num_classes=0, aux_classifier=False, ema_decay=0.0, projection=False, real_label=1.0,
  )


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'loss': LOSSES, 'init': INITS}, positive=('n_critic', 'n_generator'),
               probabilities=('d_dropout', 'ema_decay'), non_negative=('gp_weight', 'num_classes'))
  checks.require(config['num_classes'] == 0 or models.can(config['model'], 'conditional'),
                 f"num_classes={config['num_classes']} makes a conditional GAN: train --model cgan (MLP) or cdcgan "
                 '(conv) instead, or set num_classes=0')
  checks.require(config['num_classes'] > 0 or not models.can(config['model'], 'conditional'),
                 f"a {config['model']} model is conditional: set num_classes to the number of classes (> 0)")
  for key in ('aux_classifier', 'projection'):
    checks.require(not config[key] or config['num_classes'] > 0, f'{key} reads the class asked for: train --model '
                   'cgan or cdcgan with it')
  checks.require(not (config['aux_classifier'] and config['projection']),
                 'aux_classifier and projection are two ways for D to read the label: set the other one to false '
                 '(cdcgan has projection=true)')
  checks.require(0 < config['real_label'] <= 1 and (config['real_label'] == 1 or config['loss'] == 'nonsaturating'),
                 f"real_label={config['real_label']} is D's target for real images: set it in (0, 1] (1: no "
                 'smoothing), and to 1 with the wasserstein loss')
  checks.require(not (config['d_norm'] == 'batch' and config['gp_weight'] > 0),
                 'the gradient penalty needs critic outputs that depend on each example alone: set d_norm=layer or '
                 'none with gp_weight > 0 (Gulrajani et al.)')


def create_state(key: jax.Array, config, sample_batch) -> steps.PlayerState:
  x = sample_batch['image'][:1]
  arch, hidden, conv, compute = config['arch'], config['hidden'], config['conv_features'], jnn.compute(config)
  g_activation = jnn.leaky_relu if arch == 'mlp' else jax.nn.relu  # the MLP GAN's and DCGAN's generators
  head = config['aux_classifier'] or config['projection']  # D sees the image alone and has K more outputs
  d_out = 1 + config['num_classes'] * head
  nets = {'generator': jnn.make_decoder(arch, x.shape[1:], hidden, conv, activation=g_activation,
                                        norm=config['norm'], **compute),
          'discriminator': jnn.make_encoder(arch, d_out, hidden, conv, config['d_dropout'],
                                            activation=jnn.leaky_relu, norm=config['d_norm'], **compute)}
  y, z = conditioning.one_hot(jnp.zeros(1, jnp.int32), config['num_classes']), jnp.zeros((1, config['latent_dim']))
  variables = steps.init_players(key, nets, {'generator': conditioning.join_code(z, y),
                                             'discriminator': conditioning.join_image(x, None if head else y, arch)})
  if config['init'] == 'dcgan':
    for part, k in zip(variables, jax.random.split(jax.random.fold_in(key, 1), 2), strict=True):
      variables[part] = {**variables[part], 'params': jnn.dcgan_init(k, variables[part]['params'])}
  if config['ema_decay']:  # the average starts at G's weights, in buffers of its own (the loop donates the state)
    nets['generator_average'] = nets['generator']
    variables['generator_average'] = jax.tree.map(jnp.copy, variables['generator'])
  phases = {'discriminator': steps.Phase(('discriminator',), steps.make_optimizer(config, config['n_critic'])),
            'generator': steps.Phase(('generator',), steps.make_optimizer(config, config['n_generator']))}
  return steps.PlayerState.create(nets, variables, phases)


def generate(state, z: jax.Array, y: jax.Array | None = None) -> jax.Array:
  """Images `G(z)` (`G(z, y)`, one-hot `y: [B, K]`): `[B, H, W, C]` in [0, 1] (the tanh output rescaled), from
  G's moving average if kept (`ema_decay`); batch norm reads its running averages."""
  part = 'generator_average' if 'generator_average' in state.params else 'generator'
  return to_image(state.apply(part, conditioning.join_code(z, y)))


def critic(state, x: jax.Array, y: jax.Array | None = None, projection: bool = False) -> jax.Array:
  """`D(x)` (`D(x, y)`; a projection D's given `projection`) of images in [0, 1], fed centred to [-1, 1]: `[B]`
  logits (non-saturating) or scores (Wasserstein), in evaluation mode (no dropout; batch norm's running averages)."""
  return critic_outputs(state, x, y, None, projection)[0]


def train_step(state, batch, key, *, loss, latent_dim, n_critic, n_generator, gp_weight, num_classes, ema_decay,
               projection, real_label):
  """`n_critic` discriminator updates, then `n_generator` generator updates (and its moving average's, given
  `ema_decay`): `(state, metrics)`; a conditional GAN (`num_classes` > 0) conditions both players on the batch's
  labels. Each update draws its own z.

  Metrics (the last update's of each player): d_loss, d_real, d_fake (mean D(x) and D(G(z)): probabilities, or
  critic scores for 'wasserstein'), gp, g_loss.
  """
  x, mask = batch['image'], batch.get('mask')
  y = conditioning.one_hot(batch['label'], num_classes) if num_classes else None
  keys = jax.random.split(key, n_critic + n_generator)

  def critic_update(state, k):
    z, eps, k_drop = draws(k, x, latent_dim)
    return steps.phase_step(state, 'discriminator', discriminator_loss, x, mask, z, eps, loss, gp_weight, k_drop, y,
                            projection, real_label)

  def generator_update(state, k):
    z, _, k_drop = draws(k, x, latent_dim)
    return steps.phase_step(state, 'generator', generator_loss, z, loss, k_drop, y, projection)

  state, d_metrics = jax.lax.scan(critic_update, state, keys[:n_critic], unroll=True)  # XLA counts all FLOPs
  state, g_metrics = jax.lax.scan(generator_update, state, keys[n_critic:], unroll=True)
  if 'generator_average' in state.params:  # G's moving average (`ema_decay` > 0 made it); its batch statistics
    # are its own, of its outputs for the last G update's z. The state decides, not `ema_decay`: under a sweep's
    # vmap `ema_decay` is an array, and members with an average and without differ in structure (other groups)
    state = steps.update_average(state, 'generator', ema_decay)
    state = state.run('generator_average', conditioning.join_code(draws(keys[-1], x, latent_dim)[0], y))[1]
  return state.replace(step=state.step + 1), {k: v[-1] for k, v in {**d_metrics, **g_metrics}.items()}


def eval_step(state, batch, key, *, loss, latent_dim, gp_weight, num_classes, projection, real_label):
  """Sums over held-out images of d_loss, d_real, d_fake (gp), g_loss, and `count`; key draws z and eps."""
  x, mask = batch['image'], batch.get('mask')
  y = conditioning.one_hot(batch['label'], num_classes) if num_classes else None
  z, eps, _ = draws(key, x, latent_dim)
  d_loss, parts, _ = discriminator_terms(state, x, z, eps, loss, gp_weight, y=y, projection=projection,
                                         real_label=real_label)
  per_example = {'d_loss': d_loss, **parts, 'g_loss': generator_terms(state, z, loss, y=y, projection=projection)[0]}
  return {**{k: losses.masked_sum(v, mask) for k, v in per_example.items()}, 'count': losses.masked_count(batch)}


def sample(state, key: jax.Array, n: int, labels: jax.Array | None = None, *, latent_dim, num_classes) -> jax.Array:
  """`n` images `G(z)`, z ~ N(0, I) from `key`: `[n, H, W, C]` in [0, 1]. A conditional GAN draws `G(z, y)` for
  the requested `labels: [n]` (default: every class in turn); an unconditional one takes no labels."""
  z = jax.random.normal(key, (n, latent_dim))
  if not num_classes:
    return generate(state, z, None)
  labels = conditioning.balanced(n, num_classes) if labels is None else labels
  return generate(state, z, conditioning.one_hot(labels, num_classes))


def eval_images(state, batch, key, *, latent_dim, num_classes):
  """`{'samples'}` from a fixed noise batch (`key`), comparable across epochs; a conditional GAN adds
  `'class_grid'`: one z per row, the classes across (`conditioning.style_grid`)."""
  images = {'samples': sample(state, key, batch['image'].shape[0], latent_dim=latent_dim, num_classes=num_classes)}
  if num_classes:
    z, labels = conditioning.style_grid(jax.random.normal(key, (num_classes, latent_dim)), num_classes)
    images['class_grid'] = generate(state, z, conditioning.one_hot(labels, num_classes))
  return images
