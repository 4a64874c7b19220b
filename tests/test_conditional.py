"""Conditional families (cgan, cdcgan, cvae, saae): labels in, the classes asked for out, bad labels refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import cli, conditioning, data, load, models, steps
from jaxae import config as config_lib
from jaxae.errors import UserError
from jaxae.evaluation import samples
from jaxae.loop import train

CONDITIONAL = models.with_capability('conditional')


def test_the_conditional_families_are_declared():
  assert set(CONDITIONAL) == {'cgan', 'cdcgan', 'cvae', 'saae'}


def test_labels_join_codes_and_images_as_one_hot_vectors():
  y = conditioning.one_hot(jnp.array([2, -1]), 4)
  np.testing.assert_array_equal(y, [[0, 0, 1, 0], [0, 0, 0, 0]])  # -1 (padding, unlabelled): no class
  assert conditioning.one_hot(jnp.array([2]), 0) is None
  z = jnp.ones((2, 3))
  np.testing.assert_array_equal(conditioning.join_code(z, y), [[1, 1, 1, 0, 0, 1, 0], [1, 1, 1, 0, 0, 0, 0]])
  assert conditioning.join_code(z, None) is z
  x = jnp.full((2, 5, 5, 1), 0.5)
  flat = conditioning.join_image(x, y, 'mlp')
  assert flat.shape == (2, 29) and np.array_equal(flat[:, 25:], y)
  channels = conditioning.join_image(x, y, 'conv')
  assert channels.shape == (2, 5, 5, 5) and np.array_equal(channels[:, 3, 1, 1:], y)  # constant over H, W
  z, labels = conditioning.style_grid(jnp.arange(2.0)[:, None], 3)  # rows: a style; columns: the classes
  np.testing.assert_array_equal(z[:, 0], [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(conditioning.balanced(5, 3), [0, 1, 2, 0, 1])


def test_requested_labels_are_checked_in_one_line():
  np.testing.assert_array_equal(conditioning.requested(None, 4, 3), [0, 1, 2, 0])
  with pytest.raises(UserError, match='2 labels for 3 samples'):
    conditioning.requested([1, 2], 3, 10)
  with pytest.raises(UserError, match=r'label 10 is outside 0..9: set num_classes=11'):
    conditioning.requested([1, 10, 2], 3, 10)
  with pytest.raises(UserError, match='must be integers'):
    conditioning.requested([0.5, 1.0], 2, 10)
  with pytest.raises(UserError, match=r'requested labels must be integers in 0..9, got bool values \(True/False are '
                     r'not classes\)'):
    conditioning.requested([True, False], 2, 10)  # were taken as classes 1 and 0
  for labels in (['3', '7'], [None, 1], [np.nan, 1.0]):  # a traceback each, or a silent class
    with pytest.raises(UserError, match='requested labels must be integers in 0..9, got '):
      conditioning.requested(labels, 2, 10)
  with pytest.raises(UserError, match='label -1 is outside 0..9: a conditional family needs every image labelled'):
    conditioning.check_data(({'label': np.array([0, 3])}, {'label': np.array([2, -1])}), 10)


def make(name):
  shape = (32, 32, 3) if name == 'cdcgan' else (8, 8, 1)
  config = config_lib.resolve({'model': name, 'hidden': (32, 16), 'latent_dim': 4, 'conv_features': (8, 16)})
  batch = {'image': jax.random.uniform(jax.random.key(9), (6, *shape)), 'label': jnp.arange(6, dtype=jnp.int32),
           'mask': jnp.ones(6)}
  model = models.get(name)
  return model, config, models.create_state(model, jax.random.key(0), config, batch), batch


@pytest.mark.parametrize('name', CONDITIONAL)
def test_each_label_conditions_its_own_sample_and_training_reads_the_labels(name):
  model, config, state, batch = make(name)
  sample = jax.jit(steps.bind(model.sample, config), static_argnums=2)
  key = jax.random.key(1)
  a, b = sample(state, key, 2, jnp.array([3, 3])), sample(state, key, 2, jnp.array([3, 5]))
  assert np.array_equal(a[0], b[0]) and not np.allclose(a[1], b[1], atol=1e-6)  # the same z, another class
  np.testing.assert_array_equal(sample(state, key, 4), sample(state, key, 4, conditioning.balanced(4, 10)))
  step = jax.jit(steps.bind(model.train_step, config))
  metrics = step(state, batch, jax.random.key(2))[1]
  permuted = step(state, {**batch, 'label': batch['label'][::-1]}, jax.random.key(2))[1]
  assert any(not np.isclose(metrics[k], permuted[k], rtol=1e-6) for k in model.HEADLINE)


def test_the_supervised_aae_discriminator_judges_a_code_with_its_label():
  """D(z, y): the same code is judged differently under another label, so matching it to the prior makes
  q(z|y) = p(z) for every class (the code keeps no class for the decoder to read instead of the label)."""
  model, config, state, batch = make('saae')
  z = jax.random.normal(jax.random.key(3), (6, config['latent_dim']))
  y = conditioning.one_hot(batch['label'], 10)
  real, fake = model.discriminator_logits(state, batch['image'], z, y)
  real_other, fake_other = model.discriminator_logits(state, batch['image'], z, jnp.roll(y, 1, axis=0))
  assert real.shape == fake.shape == (6,)
  assert not np.allclose(real, real_other, atol=1e-6) and not np.allclose(fake, fake_other, atol=1e-6)


@pytest.mark.parametrize('head', ['aux_classifier', 'projection'])
@pytest.mark.parametrize('name,shape', [('cgan', (8, 8, 1)), ('cdcgan', (32, 32, 3))])
def test_a_discriminator_that_sees_the_image_alone_reads_the_label_from_its_k_more_outputs(name, shape, head):
  """D's input is the image alone, its outputs a logit and K more (closed forms from D's outputs). AC-GAN (Odena
  et al.): class logits; D's loss adds their cross-entropy on real and fake images, G's on its fakes. Projection
  (Miyato & Koyama): D's score is output 0 plus the label's own output, y^T V phi(x); no class loss."""
  projection = head == 'projection'
  config = config_lib.resolve({'model': name, 'hidden': (32, 16), 'latent_dim': 4, 'conv_features': (8, 16),
                               'aux_classifier': not projection, 'projection': projection})
  model = models.get(name)
  x = jax.random.uniform(jax.random.key(9), (6, *shape))
  state = models.create_state(model, jax.random.key(0), config, {'image': x})
  kernels = [v for k, v in jax.tree_util.tree_leaves_with_path(state.params['discriminator']) if 'kernel' in str(k)]
  assert kernels[0].shape[-2] == (64 if name == 'cgan' else 3) and kernels[-1].shape[1] == 11  # no label channel
  y = conditioning.one_hot(jnp.arange(6) % 10, 10)
  z = jax.random.normal(jax.random.key(1), (6, 4))
  d_terms, _, _ = model.discriminator_terms(state, x, z, jnp.zeros((6, 1, 1, 1)), 'nonsaturating', 0.0, y=y,
                                            projection=projection)
  g_terms, _ = model.generator_terms(state, z, 'nonsaturating', y=y, projection=projection)
  real = state.apply('discriminator', 2 * x - 1)
  fake = state.apply('discriminator', 2 * model.generate(state, z, y) - 1)
  softplus = jax.nn.softplus
  if projection:
    score = lambda out: out[:, 0] + out[jnp.arange(6), 1 + jnp.arange(6) % 10]
    np.testing.assert_allclose(d_terms, softplus(-score(real)) + softplus(score(fake)), rtol=1e-5)
    np.testing.assert_allclose(g_terms, softplus(-score(fake)), rtol=1e-5)
    np.testing.assert_allclose(model.critic(state, x, y, projection=True), score(real), rtol=1e-5)
  else:
    ce = lambda out: -jnp.sum(y * jax.nn.log_softmax(out[:, 1:]), axis=-1)
    np.testing.assert_allclose(d_terms, softplus(-real[:, 0]) + softplus(fake[:, 0]) + ce(real) + ce(fake), rtol=1e-5)
    np.testing.assert_allclose(g_terms, softplus(-fake[:, 0]) + ce(fake), rtol=1e-5)
  with pytest.raises(UserError, match=f'{head} reads the class asked for'):
    config_lib.resolve({'model': 'gan', head: True})
  with pytest.raises(UserError, match='aux_classifier and projection are two ways'):
    config_lib.resolve({'model': name, 'aux_classifier': True, 'projection': True})


def patterns(n: int, seed: int):
  """`n` 8x8 images, each one of ten fixed random binary patterns (its label) with a little noise."""
  rng = np.random.default_rng(0)
  centres = (rng.random((10, 8, 8, 1)) > 0.5).astype(np.float32)
  labels = np.random.default_rng(seed).integers(0, 10, n)
  noise = np.random.default_rng(seed + 1).normal(0, 0.05, (n, 8, 8, 1))
  return np.clip(centres[labels] + noise, 0, 1).astype(np.float32), labels, centres


def test_the_conditional_vae_learns_to_draw_the_class_asked_for(tmp_path):
  """Ten classes, each one fixed pattern: after a short run, samples asked for class c are nearest to pattern c
  (>= 95%), and the samples suite reports the classifier's per-class accuracy and FD. (The cGAN and the
  supervised AAE take thousands of steps to heed the label: measured on MNIST, not here.)"""
  x, y, centres = patterns(1000, 1)
  x_test, y_test, _ = patterns(200, 3)
  sets = data.from_arrays(x, y, x_test, y_test)
  config = tiny(model='cvae', epochs=30, learning_rate=3e-3, latent_dim=4, binarize='none', num_figure_images=8)
  train.train_and_evaluate(config, tmp_path, progress=False, data=sets)
  assert (tmp_path / 'figures' / 'class_grid.png').exists()
  loaded = load(tmp_path, data=sets)
  asked = np.repeat(np.arange(10), 20)
  images = np.asarray(loaded.sample(jax.random.key(0), 200, asked))
  nearest = np.argmin(((images[:, None] - centres[None]) ** 2).sum(axis=(2, 3, 4)), axis=1)
  assert np.mean(nearest == asked) >= 0.95, np.mean(nearest == asked)
  metrics = samples.run(loaded, jax.random.key(1), num_samples=200, classifier_epochs=5)[0]
  assert metrics['class_accuracy'] >= 0.95 and len(metrics['per_class_accuracy']) == len(metrics['per_class_fd']) == 10
  assert metrics['class_accuracy_min'] == min(metrics['per_class_accuracy'])
  with pytest.raises(UserError, match='3 labels for 2 samples'):
    loaded.sample(jax.random.key(0), 2, [1, 2, 3])
  with pytest.raises(UserError, match='label 12 is outside 0..9'):
    loaded.sample(jax.random.key(0), 2, [1, 12])


def test_bad_labels_and_classes_are_one_line_exit_2_before_anything_is_written(tmp_path, capsys):
  cases = [(['--model', 'cgan', '--set', 'num_classes=5'], 'label 9 is outside 0..4: set num_classes=10'),
           (['--model', 'gan', '--set', 'num_classes=10'], 'makes a conditional GAN: train --model cgan'),
           (['--model', 'aae', '--set', 'num_classes=10'], 'train --model saae instead'),
           (['--model', 'cvae', '--set', 'num_classes=0'], 'num_classes must be positive')]
  for argv, message in cases:
    assert cli.main([*argv, '--workdir', str(tmp_path / 'run'), '--no-progress']) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'run').exists()


def test_an_unconditional_model_takes_no_labels(tmp_path):
  train.train_and_evaluate(tiny(model='gan', epochs=1, latent_dim=4), tmp_path, progress=False)
  with pytest.raises(UserError, match='is not conditional: sample it without labels'):
    load(tmp_path).sample(jax.random.key(0), 2, [1, 2])
