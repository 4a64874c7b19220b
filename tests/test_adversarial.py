"""Several-player families (AAE, GANs): phases touch only their own players, losses, priors, the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import config as config_lib
from jaxae import losses, models, priors, steps
from jaxae.errors import UserError
from jaxae.loop import make_keys, train
from jaxae.loop.compile import compile_fns


def make(name, shape=(8, 8, 1), **overrides):
  config = config_lib.resolve({'model': name, 'hidden': (32, 16), 'latent_dim': 2, 'conv_features': (4, 8),
                               'disc_hidden': (16,), **overrides} if name == 'aae' else
                              {'model': name, 'hidden': (32, 16), 'latent_dim': 4, 'conv_features': (4, 8),
                               **overrides})
  x = jax.random.uniform(jax.random.key(9), (16, *shape))
  model = models.get(name)
  return model, config, models.create_state(model, jax.random.key(0), config, {'image': x}), x


def changed(a, b) -> dict:
  """Which top-level entries of two dicts of pytrees differ anywhere."""
  return {k: not all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k]), strict=True))
          for k in a}


AAE_PHASES = {
    'reconstruction': lambda s, x, key: steps.phase_step(s, 'reconstruction', models.get('aae').reconstruction_loss,
                                                         x, None, 'bernoulli'),
    'discriminator': lambda s, x, key: steps.phase_step(s, 'discriminator', models.get('aae').discriminator_loss, x,
                                                        priors.sample(key, x.shape[0], 2, 'mixture'), None),
    'generator': lambda s, x, key: steps.phase_step(s, 'generator', models.get('aae').generator_loss, x, None, 1.0),
}


@pytest.mark.parametrize('phase', sorted(AAE_PHASES))
def test_each_aae_phase_changes_only_its_own_parts_and_optimizer_state(phase):
  _, _, state, x = make('aae', prior='mixture')
  new, _ = AAE_PHASES[phase](state, x, jax.random.key(1))
  parts = set(state.phases[phase].parts)
  assert changed(state.params, new.params) == {p: p in parts for p in state.params}
  assert changed(state.opt_state, new.opt_state) == {q: q == phase for q in state.opt_state}


@pytest.mark.parametrize('phase', ['discriminator', 'generator'])
@pytest.mark.parametrize('name', ['gan', 'wgan_gp'])
def test_each_gan_phase_changes_only_its_own_player(name, phase):
  gan = models.get(name)
  _, config, state, x = make(name)
  z, eps, k_drop = gan.draws(jax.random.key(1), x, config['latent_dim'])
  if phase == 'discriminator':
    new, _ = steps.phase_step(state, phase, gan.discriminator_loss, x, None, z, eps, config['loss'],
                              config['gp_weight'], k_drop)
  else:
    new, _ = steps.phase_step(state, phase, gan.generator_loss, z, config['loss'], k_drop)
  assert changed(state.params, new.params) == {p: p == phase for p in state.params}
  assert changed(state.opt_state, new.opt_state) == {q: q == phase for q in state.opt_state}


@pytest.mark.parametrize('name,n_critic,n_generator', [('wgan_gp', 3, 1), ('dcgan', 1, 2)])
def test_a_step_makes_n_critic_critic_updates_then_n_generator_generator_updates(name, n_critic, n_generator):
  _, config, state, x = make(name, n_critic=n_critic, n_generator=n_generator)
  new, _ = jax.jit(steps.bind(models.get(name).train_step, config))(state, {'image': x}, jax.random.key(1))
  count = lambda opt_state: int(jax.tree.leaves(opt_state)[0])  # adam's count comes first
  assert count(new.opt_state['discriminator']) == n_critic and count(new.opt_state['generator']) == n_generator
  assert int(new.step) == 1


@pytest.mark.parametrize('name', ['gan', 'dcgan'])
def test_the_generator_average_follows_its_formula_and_is_what_samples_are_drawn_from(name):
  """After step t, avg = d avg + (1 - d) G with d = min(decay, (1 + t) / (10 + t)); `sample` reads it; the
  average never enters a phase; its batch norm keeps running averages of its own outputs for the step's z."""
  model, config, state, x = make(name, ema_decay=0.2)  # the cap binds at t = 2
  assert 'generator_average' not in make(name)[2].params
  step = jax.jit(steps.bind(model.train_step, config))
  before = state
  for t in range(3):
    new = step(before, {'image': x}, jax.random.key(t))[0]
    d = min(0.2, (1 + t) / (10 + t))
    expected = jax.tree.map(lambda a, g, d=d: d * a + (1 - d) * g, before.params['generator_average'],
                            new.params['generator'])
    if name == 'dcgan':
      k_last = jax.random.split(jax.random.key(t), 1 + config['n_generator'])[-1]  # the last G update's (n_critic 1)
      z = model.draws(k_last, x, 4)[0]
      stats = {**new.batch_stats, 'generator_average': before.batch_stats['generator_average']}
      expected = {'params': expected, 'stats': new.replace(batch_stats=stats).run('generator_average', z)[1]
                  .batch_stats['generator_average']}
      got = {'params': new.params['generator_average'], 'stats': new.batch_stats['generator_average']}
      assert not np.allclose(*(jax.tree.leaves(b)[0] for b in (new.batch_stats['generator'], got['stats'])))
    else:
      got = new.params['generator_average']
    for g, want in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
      np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    before = new
  assert all('generator_average' not in phase.parts for phase in before.phases.values())
  sample = lambda s: model.sample(s, jax.random.key(5), 4, latent_dim=4, num_classes=0)
  without = {k: v for k, v in before.params.items() if k != 'generator_average'}
  stats = {**before.batch_stats, **({'generator': before.batch_stats['generator_average']} if name == 'dcgan' else {})}
  np.testing.assert_array_equal(sample(before), sample(before.replace(
      params={**without, 'generator': before.params['generator_average']}, batch_stats=stats)))
  assert not np.array_equal(sample(before), sample(before.replace(params=without)))


def test_gan_losses_in_closed_form():
  logits = jnp.array([[0.0], [30.0], [-30.0]])
  np.testing.assert_allclose(losses.gan_real_loss(logits), [np.log(2), 0, 30], atol=1e-6)
  np.testing.assert_allclose(losses.gan_fake_loss(logits), [np.log(2), 30, 0], atol=1e-6)
  # one-sided label smoothing: cross-entropy to 0.9, -(0.9 log D + 0.1 log(1 - D)), finite at saturated logits
  np.testing.assert_allclose(losses.gan_real_loss(logits, 0.9), [np.log(2), 0.1 * 30, 0.9 * 30], atol=1e-5)


@pytest.mark.parametrize('name', ['gan', 'dcgan'])
def test_real_label_smooths_only_the_discriminators_target_for_real_images(name):
  """D's per-example loss with `real_label=0.9` is `0.9 sp(-D(x)) + 0.1 sp(D(x)) + sp(D(G(z)))` (sp: softplus),
  from D's own outputs; G's loss is unchanged."""
  model, config, state, x = make(name, real_label=0.9)
  z, eps, _ = model.draws(jax.random.key(1), x, config['latent_dim'])
  d_loss, parts, _ = model.discriminator_terms(state, x, z, eps, 'nonsaturating', 0.0, real_label=0.9)
  real, fake = model.critic(state, x), model.critic(state, model.generate(state, z))
  sp = jax.nn.softplus
  np.testing.assert_allclose(d_loss, 0.9 * sp(-real) + 0.1 * sp(real) + sp(fake), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(parts['d_real'], jax.nn.sigmoid(real), rtol=1e-5)
  unsmoothed = model.discriminator_terms(state, x, z, eps, 'nonsaturating', 0.0)[0]
  np.testing.assert_allclose(d_loss - unsmoothed, 0.1 * real, rtol=1e-4, atol=1e-5)  # sp(r) - sp(-r) = r


def test_the_discriminator_learns_perfectly_separable_inputs():
  """Real images all ones, a generator frozen near 0.5: D's loss goes from ~log 4 (chance) to ~0."""
  gan = models.get('gan')
  _, config, state, _ = make('gan', learning_rate=1e-2, d_dropout=0.0)
  x = jnp.ones((16, 8, 8, 1))
  z, eps, _ = gan.draws(jax.random.key(1), x, config['latent_dim'])
  d_step = jax.jit(lambda s: steps.phase_step(s, 'discriminator', gan.discriminator_loss, x, None, z, eps,
                                              'nonsaturating', 0.0))
  _, first = d_step(state)
  assert abs(float(first['d_loss']) - np.log(4)) < 0.3
  for _ in range(100):
    state, metrics = d_step(state)
  assert float(metrics['d_loss']) < 0.02 and float(metrics['d_real']) > 0.99 and float(metrics['d_fake']) < 0.01


def test_gradient_penalty_against_hand_computed_critics():
  x_real = jnp.array([[3.0, 4.0], [0.0, 0.0]])
  x_fake = jnp.array([[0.0, 0.0], [0.0, 0.5]])
  eps = jnp.array([[0.5], [0.0]])
  w = jnp.array([2.0, 0.0])  # linear critic: grad = w everywhere, ||w|| = 2 -> (2 - 1)^2 = 1
  np.testing.assert_allclose(losses.gradient_penalty(lambda x: x @ w, x_real, x_fake, eps), [1.0, 1.0], rtol=1e-6)
  # f(x) = ||x||^2 / 2: grad = x_hat = (1.5, 2) and (0, 0.5): (2.5 - 1)^2 = 2.25, (0.5 - 1)^2 = 0.25
  quadratic = lambda x: 0.5 * jnp.sum(x**2, axis=-1)
  np.testing.assert_allclose(losses.gradient_penalty(quadratic, x_real, x_fake, eps), [2.25, 0.25], rtol=1e-5)


def test_priors_sample_what_their_density_describes():
  for prior, d in (('gaussian', 3), ('uniform', 3), ('mixture', 2)):
    z = priors.sample(jax.random.key(0), 20000, d, prior)
    assert z.shape == (20000, d)
    log_p = priors.log_density(z, prior)
    assert np.isfinite(np.asarray(log_p)).all()
  grid = np.stack(np.meshgrid(np.linspace(-8, 8, 321), np.linspace(-8, 8, 321)), -1).reshape(-1, 2)
  mass = np.exp(np.asarray(priors.log_density(jnp.asarray(grid, jnp.float32), 'mixture'))).sum() * 0.05**2
  assert abs(mass - 1) < 1e-3  # the mixture's density integrates to one
  z = priors.sample(jax.random.key(1), 50000, 2, 'mixture')
  nearest = np.argmin(((np.asarray(z)[:, None] - np.asarray(priors.mixture_means())[None]) ** 2).sum(-1), axis=1)
  np.testing.assert_allclose(np.bincount(nearest, minlength=10) / 50000, 0.1, atol=0.01)  # equal weights
  np.testing.assert_allclose(np.asarray(priors.sample(jax.random.key(2), 50000, 2, 'uniform')).std(0),
                             2 / np.sqrt(12), rtol=0.02)


@pytest.mark.parametrize('overrides,message', [
    ({'model': 'aae', 'prior': 'mixture', 'latent_dim': 8}, 'prior=mixture is a mixture of 2-D Gaussians'),
    ({'model': 'aae', 'prior': 'laplace'}, "prior='laplace' is not one of"),
    ({'model': 'wgan_gp', 'n_critic': 0}, 'n_critic must be positive'),
    ({'model': 'gan', 'loss': 'hinge'}, "loss='hinge' is not one of"),
    ({'model': 'gan', 'adam_b1': 1.0}, r'adam_b1 must be in \[0, 1\)'),
    ({'model': 'wgan_gp', 'gp_weight': -1.0}, 'gp_weight must be >= 0'),
    ({'model': 'dcgan', 'real_label': 1.1}, r'real_label=1.1 is D\'s target for real images: set it in \(0, 1\]'),
    ({'model': 'wgan_gp', 'real_label': 0.9}, 'and to 1 with the wasserstein loss'),
])
def test_bad_adversarial_settings_are_user_errors(overrides, message):
  with pytest.raises(UserError, match=message):
    config_lib.resolve(overrides)


@pytest.mark.parametrize('name', ['aae', 'gan', 'dcgan', 'wgan_gp'])
def test_short_runs_on_digits_give_finite_varied_samples(tmp_path, name):
  result = train.train_and_evaluate(tiny(model=name, epochs=3, prior='gaussian', latent_dim=4) if name == 'aae'
                                    else tiny(model=name, epochs=3, latent_dim=8), tmp_path, progress=False)
  model = models.get(name)
  x = steps.bind(model.sample, result.config)(result.state, jax.random.key(0), 16)
  assert x.shape == (16, 8, 8, 1) and np.isfinite(np.asarray(x)).all()
  assert float(jnp.std(x, axis=0).mean()) > 1e-3  # not all identical
  assert (tmp_path / 'figures' / 'samples.png').stat().st_size > 1000
  assert {k for r in result.records for k in r} >= set(model.HEADLINE)


def test_the_composite_epoch_and_eval_compile_once():
  config = config_lib.resolve(tiny(model='wgan_gp', n_critic=2))
  model = models.get('wgan_gp')
  x = jnp.asarray(np.random.default_rng(0).random((100, 8, 8, 1), np.float32))
  keys = make_keys(0)
  state = models.create_state(model, keys.init, config, {'image': x[:1]})
  fns = compile_fns(model, {**config, 'checkpoint_every': 1}, 100)  # 2 chunks, the last partial
  for epoch in (1, 2):
    for start in (0, 1):
      state, _, _ = fns.chunk(state, {'image': x}, epoch, start, keys)
    fns.evaluate(state, {'image': x}, keys.eval)
  assert fns.chunk._cache_size() == 1 and fns.evaluate._cache_size() == 1 and int(state.step) == 4


def test_resuming_with_more_epochs_keeps_the_cosine_schedule_or_refuses(tmp_path):
  """The schedule's length is fixed when a run starts; more epochs need it pinned, and then follow it exactly."""
  cosine = dict(schedule='cosine', learning_rate=3e-3)
  first = train.train_and_evaluate(tiny(epochs=2, **cosine), tmp_path / 'run', progress=False)
  assert first.config['decay_steps'] == 2 * 26
  with pytest.raises(UserError, match='schedule decays over 52 steps; 4 epochs would make it 104.*decay_steps=52'):
    train.train_and_evaluate(tiny(epochs=4, **cosine), tmp_path / 'run', progress=False)
  resumed = train.train_and_evaluate(tiny(epochs=4, decay_steps=52, **cosine), tmp_path / 'run', progress=False)
  straight = train.train_and_evaluate(tiny(epochs=4, decay_steps=52, **cosine), tmp_path / 'straight',
                                      progress=False)
  for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(straight.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert [r['loss'] for r in resumed.records] == [r['loss'] for r in straight.records]
