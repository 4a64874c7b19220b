"""Undercomplete autoencoder, with tied, denoising and dropout variants.

One network family covers four classic models, switched by config fields:

- undercomplete AE: encoder f, decoder g, code smaller than the input,
  loss = -log p(x | g(f(x))) (Bernoulli logits or unit Gaussian);
- tied weights (`tied=True`): g uses f's kernels transposed;
- denoising (`noise` in gaussian / masking / salt_and_pepper, `noise_level`):
  loss of g(f(x~)) against the clean x, x~ drawn inside the step;
- dropout (`input_dropout`, `dropout_rate`): through the 'dropout' stream, off
  at evaluation;
- conv nets may normalise (`norm`): batch norm trains on each batch's statistics and
  evaluates with their running averages (`state.batch_stats`), or layer norm.

`tied_ae`, `dae` and `dropout_ae` are presets of this module.

References:
  Hinton & Salakhutdinov, Reducing the Dimensionality of Data with Neural
  Networks, Science 2006.
  Vincent et al., Extracting and Composing Robust Features with Denoising
  Autoencoders, ICML 2008.
  Srivastava et al., Dropout, JMLR 2014.
"""

import flax.linen as nn
import jax

from jaxae import checks, corruption, losses, steps
from jaxae import nn as jnn
from jaxae.models._tied import TiedAutoencoder

__all__ = ['CAN', 'HEADLINE', 'KEYS', 'create_state', 'decode', 'defaults', 'encode', 'eval_images', 'eval_step',
           'loss_fn', 'make_network', 'train_step', 'validate']

HEADLINE = ('loss',)  # the metric the loop shows: reconstruction NLL, nats per example
CAN = frozenset({'encode'})  # stochastic with noise or dropout: the dae and dropout_ae presets declare it


KEYS = dict(  # what this family's own config keys mean (jaxae-train --list-config)
    tied='decoder uses the encoder kernels transposed',
    noise='input corruption: none, gaussian, masking, salt_and_pepper',
    noise_level='corruption std (gaussian) or probability (masking, salt_and_pepper)',
    input_dropout='dropout rate on the input', dropout_rate='dropout rate after each hidden layer',
)


def defaults() -> dict:
  return dict(
      arch='mlp', hidden=(512, 256), conv_features=(32, 64), latent_dim=32,
      likelihood='bernoulli', tied=False, noise='none', noise_level=0.0,
      input_dropout=0.0, dropout_rate=0.0, norm='none',
  )


def validate(config) -> None:
  """`UserError` for a bad network, likelihood, corruption or dropout setting."""
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS, 'noise': corruption.KINDS},
                   non_negative=('noise_level',), probabilities=('input_dropout', 'dropout_rate'))
  checks.require(not (config['tied'] and config['norm'] != 'none'),
                 f"the tied network has no norm layers: set norm=none or tied=false (norm={config['norm']})")
  if config['noise'] in ('masking', 'salt_and_pepper'):
    checks.require(config['noise_level'] <= 1,
                       f"noise_level is a probability for {config['noise']}: set it in [0, 1]")


class Autoencoder(nn.Module):
  """`x -> decoder(encoder(dropout(x)))`; outputs logits or Gaussian means."""

  encoder: nn.Module
  decoder: nn.Module
  input_dropout: float = 0.0

  def setup(self):
    self.input_drop = nn.Dropout(self.input_dropout)

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    """`[B, H, W, C] -> [B, latent_dim]`."""
    return self.encoder(self.input_drop(x, deterministic=not train), train)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """`[B, latent_dim] -> [B, H, W, C]` decoder outputs."""
    return self.decoder(z, train)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.decode(self.encode(x, train), train)


def make_network(config, image_shape) -> nn.Module:
  """The (tied or untied) autoencoder of a resolved `config` for images of shape `image_shape` `(H, W, C)`."""
  checks.resolved(config, defaults(), 'ae', 'make_network')
  conv, compute = config['arch'] == 'conv', jnn.compute(config)
  if config['tied']:
    if conv:
      jnn.check_conv_shape(image_shape, len(config['conv_features']))
    return TiedAutoencoder(
        tuple(image_shape), config['latent_dim'], tuple(config['hidden']),
        tuple(config['conv_features']) if conv else (),
        config['input_dropout'], config['dropout_rate'], **compute,
    )
  args = (config['arch'], config['hidden'], config['conv_features'], config['dropout_rate'])
  return Autoencoder(
      jnn.make_encoder(args[0], config['latent_dim'], *args[1:], norm=config['norm'], **compute),
      jnn.make_decoder(args[0], image_shape, *args[1:], norm=config['norm'], **compute),
      config['input_dropout'],
  )


def create_state(key: jax.Array, config, sample_batch) -> steps.TrainState:
  x = sample_batch['image'][:1]
  net = make_network(config, x.shape[1:])
  return steps.create_train_state(net.apply, net.init({'params': key}, x), config)


def loss_fn(params, batch_stats, apply_fn, batch, key, *, likelihood, noise, noise_level):
  """Mean reconstruction NLL of the (corrupted, dropped-out) input against the clean one, in training mode.

  Returns:
    `(loss, (metrics, batch_stats))`: the running averages updated by this batch (`{}` without batch norm).
  """
  noise_key, dropout_key = jax.random.split(key)
  x = batch['image']
  x_tilde = corruption.corrupt(x, noise_key, noise, noise_level)
  out, updates = apply_fn({'params': params, 'batch_stats': batch_stats}, x_tilde, train=True,
                          rngs={'dropout': dropout_key}, mutable=['batch_stats'])
  loss = losses.masked_mean(losses.reconstruction_nll(out, x, likelihood), batch.get('mask'))
  return loss, ({'loss': loss, 'rec': loss}, updates['batch_stats'])


def train_step(state, batch, key, *, likelihood, noise, noise_level):
  """`(state, batch, key) -> (state, {'loss', 'rec'})`; key feeds noise and dropout."""
  grad_fn = jax.grad(loss_fn, has_aux=True)
  grads, (metrics, batch_stats) = grad_fn(state.params, state.batch_stats, state.apply_fn, batch, key,
                                          likelihood=likelihood, noise=noise, noise_level=noise_level)
  return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics


def eval_step(state, batch, key, *, likelihood):
  """Clean-input reconstruction NLL sums: `{'loss', 'rec', 'count'}` (key unused)."""
  del key
  out = state.apply_fn(state.variables(), batch['image'])
  rec = losses.masked_sum(losses.reconstruction_nll(out, batch['image'], likelihood), batch.get('mask'))
  return {'loss': rec, 'rec': rec, 'count': losses.masked_count(batch)}


def encode(state, x: jax.Array) -> jax.Array:
  """Codes `[B, latent_dim]` of images `x: [B, H, W, C]` (deterministic)."""
  return state.apply_fn(state.variables(), x, method='encode')


def decode(state, z: jax.Array, *, likelihood) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1] (decoder means) from codes `z`."""
  out = state.apply_fn(state.variables(), z, method='decode')
  return losses.decoder_mean(out, likelihood)


def eval_images(state, batch, key, *, likelihood):
  """`{'reconstructions': [B, H, W, C]}` of the clean inputs."""
  del key
  return {'reconstructions': decode(state, encode(state, batch['image']), likelihood=likelihood)}
