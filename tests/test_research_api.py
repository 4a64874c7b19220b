"""What a researcher does with jaxae's pure functions: an own optax loop around the VAE, the AAE and the GAN on
digits; a prior and a likelihood of their own; likelihood bounds of a loaded model; and a one-line error for
every wrong name or shape at the public functions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny

import jaxae
from jaxae import config, corruption, likelihoods, losses, models, priors, steps
from jaxae.errors import UserError

DIGITS = jaxae.data.load_digits()['train']['image'][:512]  # [512, 8, 8, 1] in [0, 1]


def optimizer(steps_total: int):
  """Transforms jaxae does not use itself: AdamW, clipping, a warm-up cosine schedule."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 20, steps_total)
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


def batches(n_steps: int, batch: int = 64):
  for t in range(n_steps):
    yield jnp.asarray(DIGITS[(t * batch) % 512:(t * batch) % 512 + batch])


def own_vae_loop(cfg, n_steps: int = 300, **hp):
  """The VAE's `loss_fn` under an own optimizer and loop; returns the first and last 20 steps' mean loss."""
  vae = models.get('vae')
  net = vae.make_network(cfg, (8, 8, 1))
  params = net.init({'params': jax.random.key(0), 'latent': jax.random.key(0)}, DIGITS[:1])['params']
  tx = optimizer(n_steps)
  opt_state = tx.init(params)
  hp = {'likelihood': cfg['likelihood'], 'beta': cfg['beta'], 'iwae_samples': 1, **hp}

  @jax.jit
  def update(params, opt_state, x, key):
    (loss, _), grads = jax.value_and_grad(vae.loss_fn, has_aux=True)(params, net.apply, {'image': x}, key, **hp)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  seen = []
  for t, x in enumerate(batches(n_steps)):
    params, opt_state, loss = update(params, opt_state, x, jax.random.fold_in(jax.random.key(1), t))
    seen.append(float(loss))
  return np.mean(seen[:20]), np.mean(seen[-20:]), params, net


def test_an_own_loop_around_the_vae_learns_with_transforms_jaxae_does_not_use():
  cfg = config.resolve({'model': 'vae', 'hidden': '64,32', 'latent_dim': 8})  # what the CLI takes
  first, last, _, _ = own_vae_loop(cfg)
  assert np.isfinite(last) and last < 0.7 * first, (first, last)  # 44 -> 26.5 nats (trained: 24)


class Laplace:
  """A likelihood of the researcher's own: independent Laplace pixels of scale 0.1 around the decoder's means."""

  scale = 0.1

  def nll(self, out, x, batch_ndim=1):
    d = likelihoods.flat(out, batch_ndim) - likelihoods.flat(x, batch_ndim)
    return jnp.sum(jnp.abs(d) / self.scale + jnp.log(2 * self.scale), axis=-1)

  def mean(self, out):
    return jnp.clip(out, 0.0, 1.0)

  def sample(self, key, out):
    return out + self.scale * jax.random.laplace(key, out.shape)


class Shifted:
  """A prior of the researcher's own: N(1, I), whose KL the VAE then estimates from one sample."""

  def log_prob(self, z):
    return priors.StandardNormal().log_prob(z - 1.0)

  def sample(self, key, n, latent_dim):
    return 1.0 + jax.random.normal(key, (n, latent_dim))


def test_a_prior_and_a_likelihood_of_ones_own_train_and_evaluate():
  cfg = config.resolve({'model': 'vae', 'hidden': '64,32', 'latent_dim': 4, 'likelihood': 'gaussian'})
  first, last, params, net = own_vae_loop(cfg, 200, likelihood=Laplace(), prior=Shifted())
  assert last < 0.7 * first, (first, last)
  state = steps.create_train_state(net.apply, {'params': params}, cfg)
  hp = {**cfg, 'likelihood': Laplace(), 'prior': Shifted()}
  vae = models.get('vae')
  x = jnp.asarray(DIGITS[:64])
  nelbo = jax.jit(steps.bind(vae.negative_elbo, hp))(state, x, jax.random.key(2))
  nll = jax.jit(steps.bind(vae.importance_weighted_nll, hp), static_argnums=3)(state, x, jax.random.key(3), 200)
  assert nelbo.shape == nll.shape == (64,) and np.all(np.isfinite(nll))
  assert float(nll.mean()) < float(nelbo.mean())  # the IWAE bound is tighter than the ELBO
  terms = jax.jit(jax.vmap(lambda k: vae.negative_elbo_terms(params, net.apply, x, k, likelihood=Laplace(),
                                                             prior=Shifted())[1]))
  kl = terms(jax.random.split(jax.random.key(5), 4000)).mean(axis=0)  # the one-sample KL estimate, averaged
  mean, logvar = net.apply({'params': params}, x, method='encode')
  exact = losses.gaussian_kl_pair(mean, logvar, jnp.ones_like(mean), jnp.zeros_like(logvar))  # KL(q || N(1, I))
  np.testing.assert_allclose(kl, exact, rtol=0.02, atol=0.05)
  images = jax.jit(steps.bind(vae.sample, hp), static_argnums=2)(state, jax.random.key(4), 16)
  assert images.shape == (16, 8, 8, 1) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_the_built_in_prior_and_likelihood_give_the_numbers_they_gave_as_names():
  """Bitwise: an object in place of the name, and the prior's log-density against the formula the IWAE used."""
  vae = models.get('vae')
  cfg = config.resolve({'model': 'vae', 'hidden': '32', 'latent_dim': 4})
  x = jnp.asarray(DIGITS[:16])
  state = models.create_state(vae, jax.random.key(0), cfg, {'image': x})
  args = (state.params, state.apply_fn, x, jax.random.key(1))
  by_name = vae.negative_elbo_terms(*args, likelihood='bernoulli', prior='gaussian')
  by_object = vae.negative_elbo_terms(*args, likelihood=likelihoods.Bernoulli(), prior=priors.StandardNormal())
  assert all(np.array_equal(a, b) for a, b in zip(by_name, by_object, strict=True))
  z = jax.random.normal(jax.random.key(2), (5, 16, 4))
  assert np.array_equal(priors.get('gaussian').log_prob(z), losses.gaussian_log_density(z, 0.0, jnp.zeros_like(z)))
  with pytest.warns(DeprecationWarning, match=r'negative_elbo_terms\(\.\.\., likelihood\) positionally'):
    old = vae.negative_elbo_terms(*args, 'bernoulli')  # the 0.1 form, for one release
  assert all(np.array_equal(a, b) for a, b in zip(old, by_name, strict=True))


def test_the_0_1_calls_without_the_new_prior_setting_still_work_and_warn():
  vae = models.get('vae')
  cfg = config.resolve({'model': 'vae', 'hidden': '32', 'latent_dim': 4})
  x = jnp.asarray(DIGITS[:8])
  state = models.create_state(vae, jax.random.key(0), cfg, {'image': x})
  with pytest.warns(DeprecationWarning, match=r"vae.sample\(\) without prior= is deprecated: pass prior='gaussian'"):
    old = vae.sample(state, jax.random.key(1), 4, likelihood='bernoulli', latent_dim=4)
  assert np.array_equal(old, steps.bind(vae.sample, cfg)(state, jax.random.key(1), 4))
  with pytest.warns(DeprecationWarning, match='vae.importance_weighted_nll'):
    vae.importance_weighted_nll(state, x, jax.random.key(2), 10, likelihood='bernoulli')


@pytest.mark.parametrize('logit', [-30.0, -4.0, -0.3, -1e-3, 0.0, 2e-3, 0.7, 5.0, 30.0])
def test_the_continuous_bernoulli_is_a_density_with_its_closed_form_mean_and_sampler(logit):
  cb = likelihoods.ContinuousBernoulli()
  grid = jnp.linspace(0.0, 1.0, 200_001)
  out = jnp.full((grid.size, 1, 1, 1), logit)
  density = jnp.exp(-cb.nll(out, grid.reshape(-1, 1, 1, 1)))
  mass = float(jnp.trapezoid(density, grid))
  mean = float(jnp.trapezoid(density * grid, grid))
  assert mass == pytest.approx(1.0, abs=2e-4)
  assert float(cb.mean(jnp.float32(logit))) == pytest.approx(mean, abs=2e-4)
  draws = cb.sample(jax.random.key(0), jnp.full((200_000,), logit))
  assert float(draws.min()) >= 0 and float(draws.max()) <= 1
  assert float(draws.mean()) == pytest.approx(mean, abs=4e-3)


def own_player_update(state, opt, tx, parts, loss_fn, *args):
  """One update of `parts` of a several-player state with an own optimizer: the family's loss is a function of the
  state, so the parts' params are swapped in, differentiated, and updated (batch statistics kept)."""
  loss = lambda sub: loss_fn(state.replace(params={**state.params, **sub}), *args)
  grads, (metrics, after) = jax.grad(loss, has_aux=True)({p: state.params[p] for p in parts})
  updates, opt = tx.update(grads, opt, {p: state.params[p] for p in parts})
  params = {**state.params, **optax.apply_updates({p: state.params[p] for p in parts}, updates)}
  return after.replace(params=params), opt, metrics


def test_an_own_loop_around_the_adversarial_autoencoder_and_the_gan():
  aae, gan = models.get('aae'), models.get('gan')
  acfg = config.resolve({'model': 'aae', 'hidden': '64,32', 'latent_dim': 2, 'disc_hidden': '32'})
  gcfg = config.resolve({'model': 'gan', 'hidden': '64,32', 'latent_dim': 8})
  x0 = jnp.asarray(DIGITS[:64])
  a_state = models.create_state(aae, jax.random.key(0), acfg, {'image': x0})
  g_state = models.create_state(gan, jax.random.key(0), gcfg, {'image': x0})
  tx = optimizer(300)
  a_opt = {name: tx.init({p: a_state.params[p] for p in parts}) for name, parts in aae.PHASES.items()}
  g_opt = {part: tx.init({part: g_state.params[part]}) for part in ('discriminator', 'generator')}

  @jax.jit
  def aae_step(state, opt, x, key):
    state, opt['reconstruction'], rec = own_player_update(state, opt['reconstruction'], tx, aae.PHASES[
        'reconstruction'], aae.reconstruction_loss, x, None, 'bernoulli')
    z = priors.sample(key, x.shape[0], 2, 'gaussian')
    state, opt['discriminator'], disc = own_player_update(state, opt['discriminator'], tx, ('discriminator',),
                                                          aae.discriminator_loss, x, z, None)
    state, opt['generator'], _ = own_player_update(state, opt['generator'], tx, ('encoder',), aae.generator_loss,
                                                   x, None, 1.0)
    return state, opt, rec['rec'], disc['d_loss']

  @jax.jit
  def gan_step(state, opt, x, key):
    z, eps, drop = gan.draws(key, x, 8)
    state, opt['discriminator'], d = own_player_update(state, opt['discriminator'], tx, ('discriminator',),
                                                       gan.discriminator_loss, x, None, z, eps, 'nonsaturating', 0.0,
                                                       drop)
    state, opt['generator'], g = own_player_update(state, opt['generator'], tx, ('generator',), gan.generator_loss,
                                                   jax.random.normal(jax.random.fold_in(key, 1), z.shape),
                                                   'nonsaturating', drop)
    return state, opt, d['d_loss'], g['g_loss']

  rec, d_aae, d_gan = [], [], []
  for t, x in enumerate(batches(300)):
    key = jax.random.fold_in(jax.random.key(5), t)
    a_state, a_opt, r, d = aae_step(a_state, a_opt, x, key)
    g_state, g_opt, dg, _ = gan_step(g_state, g_opt, x, key)
    rec.append(float(r)), d_aae.append(float(d)), d_gan.append(float(dg))
  assert np.mean(rec[-20:]) < 0.6 * np.mean(rec[:20])  # the autoencoder learns
  assert 0.2 < np.mean(d_aae[-50:]) < 2.0 and np.all(np.isfinite(d_gan))  # the players stay in the game
  samples = steps.bind(gan.sample, gcfg)(g_state, jax.random.key(6), 16)
  assert samples.shape == (16, 8, 8, 1) and float(samples.std()) > 0.05


def test_a_loaded_model_scores_likelihoods_jitted_once_per_shape(tmp_path):
  jaxae.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  run = jaxae.load(tmp_path)
  x = DIGITS[:32]
  nelbo = run.negative_elbo(x, jax.random.key(0))
  nll = run.importance_weighted_nll(x, jax.random.key(1), 100)
  direct = jax.jit(steps.bind(run.model.importance_weighted_nll, run.config), static_argnums=3)(
      run.state, jnp.asarray(x), jax.random.key(1), 100)
  assert nelbo.shape == nll.shape == (32,) and np.array_equal(nll, direct)
  assert float(nll.mean()) < float(nelbo.mean())
  for _ in range(2):
    run.importance_weighted_nll(DIGITS[32:64], jax.random.key(2), 100)
  assert run._fns['importance_weighted_nll']._cache_size() == 1  # one shape, one compilation
  with pytest.raises(UserError, match=r'x must be images \[N, 8, 8, 1\] for this vae model, got shape \(8, 8, 1\)'):
    run.negative_elbo(x[0], jax.random.key(0))
  with pytest.raises(UserError, match=r'z must be codes \[N, 8\] of this vae model, got shape \(3, 4\)'):
    run.decode(np.zeros((3, 4)))
  with pytest.raises(UserError, match='num_samples must be a whole number >= 1, got 0'):
    run.importance_weighted_nll(x, jax.random.key(1), 0)


X = jnp.zeros((4, 8, 8, 1))


@pytest.mark.parametrize('call,message', [
    (lambda: losses.reconstruction_nll(X, X, 'Bernoulli'),
     r"likelihood='Bernoulli' is not one of bernoulli, gaussian, continuous_bernoulli \(names are lower case\)"),
    (lambda: losses.reconstruction_nll(X, X, 'bernouli'), "likelihood='bernouli' is not one of bernoulli, gaussian"),
    (lambda: losses.decoder_mean(X, object()), r'is neither a name \(bernoulli, gaussian, continuous_bernoulli\) nor'),
    (lambda: losses.reconstruction_nll(X[0], X[0], 'bernoulli'), r'out \(8, 8, 1\) and x \(8, 8, 1\) must both be '
     r'images \[B, H, W, C\]'),
    (lambda: losses.gaussian_kl(jnp.zeros(8), jnp.zeros(8)), r'gaussian_kl: mean must be codes \[B, K\] \(one row '
     r'per example\), got shape \(8,\); add a batch axis'),
    (lambda: losses.gaussian_kl(jnp.zeros((2, 8)), jnp.zeros((2, 4))), r'logvar \(2, 4\) must have the shape of '
     r'mean \(2, 8\)'),
    (lambda: priors.get('normal'), "prior='normal' is not one of gaussian, mixture, uniform"),
    (lambda: priors.sample(jax.random.key(0), 4, 3, 'mixture'), 'the mixture prior is over 2-D codes, asked for 3-D'),
    (lambda: corruption.corrupt(X, jax.random.key(0), 'gauss', 0.1), "noise='gauss' is not one of none, gaussian, "
     'masking, salt_and_pepper'),
    (lambda: config.resolve({'model': 'vae', 'hidden': '128;64'}), "hidden='128;64' is not a valid comma-separated"),
    (lambda: models.create_state(models.get('vae'), jax.random.key(0), {'model': 'vae'}, {'image': X}),
     r"the config lacks arch, beta, conv_features and more: pass it through jaxae.config.resolve\({'model': 'vae'"),
    (lambda: models.create_state(models.get('vae'), jax.random.key(0), config.resolve({'model': 'vae'}),
                                 {'image': X[0]}), r"sample_batch must be {'image': \[B, H, W, C\]}, got image shape "
     r'\(8, 8, 1\); add a batch axis'),
    (lambda: models.get('vae').negative_elbo_terms(None, None, X[0], jax.random.key(0), likelihood='bernoulli'),
     r'x must be images \[B, H, W, C\], got shape \(8, 8, 1\); add a batch axis'),
    (lambda: models.get('vae').negative_elbo_terms(None, None, X, jax.random.key(0)),
     'negative_elbo_terms: missing likelihood=...'),
    (lambda: jaxae.conditioning.requested(np.array(['3', '4']), 2, 10), 'requested labels must be integers in 0..9'),
])
def test_a_wrong_name_or_shape_at_a_public_function_is_one_clear_line(call, message):
  with pytest.raises(UserError, match=message) as e:
    call()
  assert '\n' not in str(e.value)
