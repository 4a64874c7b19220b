"""The hierarchical VAE: its bounds against closed forms, the warm-up, free bits and active units against constructed
cases, and learning on digits. (The shared family suite, resume, export and the CLI run it too, by name.)"""

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

import jaxae
from jaxae import config as config_lib
from jaxae import losses, metrics, models, steps
from jaxae.evaluation import likelihood
from jaxae.loop import train
from jaxae.models import _hierarchy, hvae, vae

X = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
BATCH = {'image': X, 'label': jnp.arange(6, dtype=jnp.int32)}


def make(**overrides):
  config = config_lib.resolve({'model': 'hvae', 'hidden': (32,), 'latent_dim': 8, 'upper_latents': (6, 4),
                               'upper_hidden': (16, 16), 'prior_components': 5, **overrides})
  return config, models.create_state(hvae, jax.random.key(0), config, BATCH)


def test_one_layer_is_the_vae_parameter_for_parameter_and_its_kl_is_the_vaes():
  config, state = make(upper_latents=(), upper_hidden=())
  v_config = config_lib.resolve({'model': 'vae', 'hidden': (32,), 'latent_dim': 8})
  v_state = models.create_state(vae, jax.random.key(0), v_config, BATCH)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), state.params, v_state.params))
  _, kl = hvae.layer_terms(state.params, state.apply_fn, X, jax.random.key(2), likelihood='bernoulli',
                           inference='top_down', prior='gaussian')
  _, v_kl = vae.negative_elbo_terms(v_state.params, v_state.apply_fn, X, jax.random.key(2), likelihood='bernoulli')
  np.testing.assert_allclose(kl[0], v_kl, rtol=1e-6)
  np.testing.assert_array_equal(hvae.encode(state, X), vae.encode(v_state, X))


def test_the_ladder_merge_is_the_normalised_product_of_the_two_gaussians():
  m1, lv1, m2, lv2 = (jax.random.normal(jax.random.key(i), (3, 4)) for i in range(4))
  m, lv = _hierarchy.merge(m1, lv1, m2, lv2)
  z = jax.random.normal(jax.random.key(9), (5, 3, 4))
  # log N(z; m1) + log N(z; m2) - log N(z; m) does not depend on z: the product is N(m, exp(lv)) up to a constant
  gap = (losses.gaussian_log_density(z, m1[None], lv1[None]) + losses.gaussian_log_density(z, m2[None], lv2[None])
         - losses.gaussian_log_density(z, m[None], lv[None]))
  np.testing.assert_allclose(gap, jnp.broadcast_to(gap[:1], gap.shape), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(jnp.exp(-lv), jnp.exp(-lv1) + jnp.exp(-lv2), rtol=1e-5)


def test_the_mixture_density_is_the_direct_sum_over_its_components():
  z, means = jax.random.normal(jax.random.key(0), (2, 7, 5)), 3 * jax.random.normal(jax.random.key(1), (4, 5))
  logvars, logits = jax.random.normal(jax.random.key(2), (4, 5)), jax.random.normal(jax.random.key(3), (4,))
  log_weights = jax.nn.log_softmax(logits)
  direct = jax.nn.logsumexp(jnp.stack([losses.gaussian_log_density(z, means[c][None, None], logvars[c][None, None])
                                       + log_weights[c] for c in range(4)]), axis=0)
  np.testing.assert_allclose(_hierarchy.mixture_log_prob(z, means, logvars, log_weights), direct, rtol=1e-5,
                             atol=1e-4)


@pytest.mark.parametrize('inference', ['bottom_up', 'top_down'])
@pytest.mark.parametrize('prior', ['gaussian', 'mixture', 'vamp'])
def test_every_bound_is_consistent_for_three_layers(inference, prior):
  """The K-sample IWAE NLL lies under the -ELBO's average and falls with K; the learned priors are normalised
  densities (their 2-D marginal integrates to 1 on a grid)."""
  config, state = make(inference=inference, prior=prior)
  bind = lambda fn: steps.bind(fn, config)  # noqa: E731
  negative_elbo = jax.jit(bind(hvae.negative_elbo))
  elbo = jnp.mean(jnp.stack([negative_elbo(state, X, jax.random.key(k)) for k in range(40)]), 0)
  iw = {k: hvae.importance_weighted_nll(state, X, jax.random.key(7), k, likelihood='bernoulli') for k in (1, 200)}
  assert float(jnp.mean(iw[200])) < float(jnp.mean(elbo)) and float(jnp.mean(iw[200])) < float(jnp.mean(iw[1]))
  if inference == 'bottom_up' and prior != 'gaussian':  # every term a sample: one log-weight is minus the -ELBO
    rec, kl = bind(hvae.layer_terms)(state.params, state.apply_fn, X, jax.random.key(3))
    log_w = hvae.log_weights(state.params, state.apply_fn, X, jax.random.key(3), 1, likelihood='bernoulli')
    np.testing.assert_allclose(log_w[0], -(rec + kl.sum(0)), rtol=1e-5)
  net = hvae.make_network(config, (8, 8, 1))
  z = jnp.linspace(-6, 6, 241)
  if prior != 'gaussian':  # a 4-D density integrates to 1: check its 1-D marginal along a grid in each axis
    grid = jnp.stack(jnp.meshgrid(z, z, indexing='ij'), -1).reshape(-1, 2)
    mixture = net.apply({'params': state.params}, method='prior_components')
    marginal = _hierarchy.mixture_log_prob(grid, mixture[0][:, :2], mixture[1][:, :2], mixture[2])
    assert abs(float(jnp.sum(jnp.exp(marginal)) * (z[1] - z[0]) ** 2) - 1) < 1e-2


def test_kl_warm_up_rises_linearly_and_a_run_resolves_it_from_epochs():
  weights = [float(hvae.kl_weight(jnp.int32(t), 2.0, 10)) for t in (0, 5, 10, 30)]
  assert weights == [0.0, 1.0, 2.0, 2.0]
  assert float(hvae.kl_weight(jnp.int32(0), 2.0, 0)) == 2.0
  config, state = make(kl_warmup_steps=4)
  step = jax.jit(steps.bind(hvae.train_step, config))
  seen = []
  for t in range(6):
    state, m = step(state, BATCH, jax.random.key(t))
    seen.append(float(m['kl_weight']))
  assert seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_free_bits_stop_penalising_a_layer_under_its_floor():
  config, state = make()
  hp = {k: config[k] for k in ('likelihood', 'iwae_samples', 'inference', 'prior')}
  key = jax.random.key(3)
  grad = lambda fb, beta: jax.grad(lambda p: hvae.loss_fn(  # noqa: E731
      p, state.apply_fn, BATCH, key, beta=beta, free_bits=fb, **hp)[0])(state.params)
  loss, m = hvae.loss_fn(state.params, state.apply_fn, BATCH, key, beta=1.0, free_bits=1e4, **hp)
  np.testing.assert_allclose(loss, m['rec'] + 3 * 1e4, rtol=1e-6)  # every layer under the floor: the floor
  # every KL under the floor: no gradient from the KL at all, the gradient of the reconstruction alone
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b, atol=1e-6)), grad(1e4, 1.0), grad(0.0, 0.0)))
  floor = float(m['kl2'])  # a floor between the layers' KLs penalises the ones above it only
  loss, m = hvae.loss_fn(state.params, state.apply_fn, BATCH, key, beta=1.0, free_bits=floor, **hp)
  expected = m['rec'] + sum(max(floor, float(m[f'kl{i}'])) for i in (1, 2, 3))
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_active_units_count_the_units_whose_posterior_mean_varies():
  codes = jnp.stack([jnp.linspace(-1, 1, 100), jnp.full(100, 3.0), 0.05 * jnp.linspace(-1, 1, 100)], -1)
  moments = metrics.unit_moments(codes) + metrics.unit_moments(codes)  # two batches
  assert metrics.active_units(moments, 200) == 1  # var 0.34 > 0.01; a constant; var 0.0009
  mask = jnp.concatenate([jnp.ones(50), jnp.zeros(50)])
  np.testing.assert_allclose(metrics.unit_moments(codes, mask), metrics.unit_moments(codes[:50]), rtol=1e-6)


def test_a_model_whose_decoder_ignores_z_has_no_active_unit_and_one_that_reads_it_has_them():
  """Train two one-layer models on the same batches: with the decoder's input weights held at 0 (it cannot read
  z) the KL pulls every posterior onto the prior and the held-out evaluation counts 0 active units."""
  config, state = make(upper_latents=(), upper_hidden=(), learning_rate=1e-2)
  data = jax.random.bernoulli(jax.random.key(5), 0.3, (64, 8, 8, 1)).astype(jnp.float32)
  step = jax.jit(steps.bind(hvae.train_step, config))
  evaluate = jax.jit(steps.bind(hvae.eval_step, config))
  deaf = lambda s: s.replace(params={**s.params, 'decoder': {**s.params['decoder'], 'Dense_0': {  # noqa: E731
      **s.params['decoder']['Dense_0'], 'kernel': jnp.zeros_like(s.params['decoder']['Dense_0']['kernel'])}}})
  counts = {}
  for name, hold in (('ignores z', deaf), ('reads z', lambda s: s)):
    s = hold(state)
    for t in range(300):
      s, _ = step(s, {'image': data}, jax.random.key(t))
      s = hold(s)
    counts[name] = metrics.means(evaluate(s, {'image': data}, jax.random.key(0)))['active_units1']
  assert counts['ignores z'] == 0 and counts['reads z'] > 0, counts


def test_samples_from_each_level_and_every_layers_code():
  config, state = make(inference='top_down', prior='vamp')
  codes = hvae.encode_layers(state, X)
  assert [c.shape for c in codes] == [(6, 8), (6, 6), (6, 4)]
  images = [hvae.sample_from_level(state, jax.random.key(0), 4, level, likelihood='bernoulli') for level in (1, 2, 3)]
  assert all(i.shape == (4, 8, 8, 1) and 0 <= float(i.min()) and float(i.max()) <= 1 for i in images)
  np.testing.assert_array_equal(images[0], steps.bind(hvae.sample, config)(state, jax.random.key(0), 4))
  assert not np.allclose(images[0], images[2])  # level 3: the lower layers at their means


def test_a_ladder_vae_with_warm_up_and_free_bits_learns_on_digits(tmp_path):
  result = train.train_and_evaluate(tiny(model='hvae', hidden=(64,), latent_dim=8, upper_latents=(4,),
                                         upper_hidden=(32,), epochs=6, learning_rate=3e-3, kl_warmup=2.0,
                                         free_bits=0.1), tmp_path, progress=False)
  evals = [r for r in result.records if r['split'] == 'eval']
  assert evals[-1]['nelbo'] < 0.8 * evals[0]['nelbo']
  assert result.config['kl_warmup_steps'] == 2 * result.records[1]['step'] // 1
  assert evals[-1]['active_units1'] > 0 and 'kl2' in evals[-1]
  found, _ = likelihood.run(jaxae.load(tmp_path), jax.random.key(0), iwae_samples=50)  # the suite, as for a VAE
  assert found['iwae_nll'] < found['nelbo'] < 1.1 * evals[-1]['nelbo']


def test_a_bottom_up_vampprior_run_with_warm_up_and_free_bits_resumes_bitwise(tmp_path):
  """Stopped at epoch 2 of a 3-epoch warm-up and resumed: the same weights (pseudo-inputs included) and records as
  a run never stopped; the warm-up's length was fixed when the run started."""
  config = tiny(model='hvae', hidden=(32,), latent_dim=6, upper_latents=(4,), upper_hidden=(16,), epochs=4,
                inference='bottom_up', prior='vamp', prior_components=8, kl_warmup=3.0, free_bits=0.2)
  full = train.train_and_evaluate(config, tmp_path / 'full', progress=False)
  train.train_and_evaluate({**config, 'epochs': 2}, tmp_path / 'split', progress=False)
  resumed = train.train_and_evaluate(config, tmp_path / 'split', progress=False)
  assert 'pseudo_inputs' in full.state.params and full.config['kl_warmup_steps'] == resumed.config['kl_warmup_steps']
  for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  strip = lambda records: [{k: v for k, v in r.items() if k not in ('seconds', 'examples_per_sec')}  # noqa: E731
                           for r in records]
  assert strip(full.records) == strip(metrics.read(tmp_path / 'split' / 'metrics.jsonl'))
  weights = [r['kl_weight'] for r in full.records if r['split'] == 'train']
  assert weights[0] < weights[1] < weights[2] < 1.0 == weights[3]  # epoch means of the rising weight, then 1


def test_the_likelihood_study_lists_its_rows_and_refuses_one_it_has_not():
  root = Path(__file__).resolve().parents[1]
  run = lambda *a: subprocess.run([sys.executable, 'scripts/likelihood_study.py', '--data-dir', 'x', '--workdir',  # noqa: E731
                                   'y', *a], cwd=root, capture_output=True, text=True)
  listed = run('--list')
  assert listed.returncode == 0 and '5-layer Ladder VAE + VampPrior' in listed.stdout
  bad = run('--rows', '99')
  assert bad.returncode == 2 and bad.stderr.count('\n') == 1 and 'see --list' in bad.stderr, bad.stderr
