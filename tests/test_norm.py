"""Normalisation and non-parameter state: batch norm's closed form, its running averages in one- and
several-player states, evaluation on the averages, DCGAN as Radford et al. build it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import config as config_lib
from jaxae import models, steps
from jaxae import nn as jnn


class Normed(nn.Module):
  norm: str

  @nn.compact
  def __call__(self, h, train=False):
    return jnn.normalize(self.norm, h, train)


def test_batch_norm_trains_on_the_batch_and_keeps_running_averages_with_momentum_0_9():
  scale, shift = jnp.array([1.0, 2.0, 0.5, 3.0])[None, None, None], jnp.arange(4.0)[None, None, None]
  h = jax.random.normal(jax.random.key(0), (6, 3, 3, 4)) * scale + shift
  net = Normed('batch')
  variables = net.init(jax.random.key(1), h)
  out, updates = net.apply(variables, h, train=True, mutable=['batch_stats'])
  mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
  np.testing.assert_allclose(out, (h - mean[None, None, None]) / jnp.sqrt(var + 1e-5)[None, None, None], rtol=1e-4,
                             atol=1e-5)
  stats = updates['batch_stats']['BatchNorm_0']
  np.testing.assert_allclose(stats['mean'], 0.1 * mean, rtol=1e-5, atol=1e-6)  # from mean 0
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * var, rtol=1e-5)  # from variance 1
  evaluated = net.apply({**variables, 'batch_stats': updates['batch_stats']}, h)  # the averages, not the batch
  expected = (h - stats['mean'][None, None, None]) / jnp.sqrt(stats['var'] + 1e-5)[None, None, None]
  np.testing.assert_allclose(evaluated, expected, rtol=1e-4, atol=1e-5)


def test_layer_norm_normalises_each_example_alone():
  h = jax.random.normal(jax.random.key(0), (5, 2, 2, 3)) * 4.0 + 1.0
  net = Normed('layer')
  variables = net.init(jax.random.key(1), h)
  out = net.apply(variables, h)
  np.testing.assert_allclose(out.mean((1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(out.var((1, 2, 3)), 1.0, rtol=1e-3)
  np.testing.assert_array_equal(net.apply(variables, h[:2]), out[:2])
  assert 'batch_stats' not in variables


def dcgan_state(image_shape, **overrides):
  config = config_lib.resolve(tiny(model='dcgan', conv_features=(8, 16), **overrides))
  batch = {'image': jnp.zeros((2, *image_shape))}
  return config, models.create_state(models.get('dcgan'), jax.random.key(0), config, batch)


@pytest.mark.parametrize('image_shape', [(28, 28, 1), (32, 32, 3)])
def test_dcgan_has_batch_norm_where_radford_et_al_put_it(image_shape):
  """G: project, BN, ReLU; convT, BN, ReLU; convT to the image (no BN, tanh). D: conv, LeakyReLU (no BN on
  the input layer); conv, BN, LeakyReLU; dense. The layers a batch norm follows have no bias."""
  config, state = dcgan_state(image_shape)
  g, d = state.params['generator'], state.params['discriminator']
  assert sorted(g) == ['BatchNorm_0', 'BatchNorm_1', 'ConvTranspose_0', 'ConvTranspose_1', 'Dense_0']
  assert 'bias' not in g['Dense_0'] and 'bias' not in g['ConvTranspose_0'] and 'bias' in g['ConvTranspose_1']
  assert sorted(d) == ['BatchNorm_0', 'Conv_0', 'Conv_1', 'Dense_0']
  assert 'bias' in d['Conv_0'] and 'bias' not in d['Conv_1']
  assert g['BatchNorm_0']['scale'].shape == (16,) and g['BatchNorm_1']['scale'].shape == (8,)
  assert sorted(state.batch_stats) == ['discriminator', 'generator']
  assert config['d_dropout'] == 0.0 and (config['learning_rate'], config['adam_b1']) == (2e-4, 0.5)
  kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(state.params) if p[-1].key == 'kernel']
  assert len(kernels) == 6 and abs(float(jnp.concatenate([k.ravel() for k in kernels]).std()) - 0.02) < 2e-3
  scales = jnp.concatenate([s['scale'] for part in state.params.values() for n, s in part.items() if 'Batch' in n])
  assert abs(float(scales.mean()) - 1.0) < 0.01 and 0.01 < float(scales.std()) < 0.03  # N(1, 0.02), Radford et al.
  gan = models.get('dcgan')
  images = gan.sample(state, jax.random.key(1), 3, latent_dim=config['latent_dim'], num_classes=0)
  assert images.shape == (3, *image_shape) and float(images.min()) >= 0 and float(images.max()) <= 1
  assert gan.critic(state, images).shape == (3,)


def rows_depend_on_the_batch(fn, x):
  """Whether `fn`'s outputs for the first 2 rows change when the other rows of `x` do."""
  return not np.allclose(fn(x)[:2], fn(jnp.concatenate([x[:2], 3.0 * x[2:] + 1.0]))[:2], atol=1e-6)


def test_dcgan_steps_update_the_running_averages_and_evaluation_reads_them():
  config, state = dcgan_state((8, 8, 1))
  gan = models.get('dcgan')
  x = jax.random.uniform(jax.random.key(2), (16, 8, 8, 1))
  new, _ = jax.jit(steps.bind(gan.train_step, config))(state, {'image': x, 'mask': jnp.ones(16)}, jax.random.key(3))
  for part in ('generator', 'discriminator'):
    before, after = jax.tree.leaves(state.batch_stats[part]), jax.tree.leaves(new.batch_stats[part])
    assert all(not np.allclose(a, b) for a, b in zip(before, after, strict=True)), part
  z = jax.random.normal(jax.random.key(4), (8, config['latent_dim']))
  assert not rows_depend_on_the_batch(lambda v: gan.generate(new, v), z)  # evaluation: the averages
  assert not rows_depend_on_the_batch(lambda v: gan.critic(new, v), x)
  assert rows_depend_on_the_batch(lambda v: new.run('generator', v)[0], z)  # training: the batch's statistics
  assert rows_depend_on_the_batch(lambda v: new.run('discriminator', v)[0], x)


@pytest.mark.parametrize('name', ['ae', 'aae'])
def test_a_batch_norm_autoencoder_keeps_running_averages_and_evaluates_with_them(name):
  """One player (`TrainState.batch_stats`) and several (`PlayerState`: the AAE's encoder and decoder)."""
  model = models.get(name)
  config = config_lib.resolve(tiny(model=name, arch='conv', norm='batch'))
  x = jax.random.uniform(jax.random.key(2), (16, 8, 8, 1))
  state = models.create_state(model, jax.random.key(0), config, {'image': x})
  stats = state.batch_stats  # {'encoder', 'decoder'}: the AAE's parts, the autoencoder's submodules
  assert set(stats['encoder']) == {'BatchNorm_0'} and len(stats['decoder']) == 2
  batch = {'image': x, 'mask': jnp.ones(16)}
  new, metrics = jax.jit(steps.bind(model.train_step, config))(state, batch, jax.random.key(1))
  assert float(jnp.abs(new.batch_stats['encoder']['BatchNorm_0']['mean']).max()) > 0
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert not rows_depend_on_the_batch(lambda v: model.encode(new, v), x)
  evaluate = jax.jit(steps.bind(model.eval_step, config))
  loss = lambda s: float(evaluate(s, batch, jax.random.key(3))[model.HEADLINE[0]])
  assert loss(new) != loss(new.replace(batch_stats=state.batch_stats))  # it reads the averages
