"""Losses against hand-derived values and Monte Carlo estimates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import losses


def test_squared_error_is_half_the_sum_of_squares():
  x_hat = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
  np.testing.assert_allclose(losses.squared_error(x_hat, x), [2.5, 12.5])


def test_bernoulli_nll_matches_the_definition():
  logits = np.array([[-2.0, 0.0, 3.0]])
  x = np.array([[0.0, 1.0, 0.25]])
  p = 1 / (1 + np.exp(-logits))
  expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1)
  np.testing.assert_allclose(losses.bernoulli_nll(jnp.asarray(logits), jnp.asarray(x)), expected, rtol=1e-6)


@pytest.mark.parametrize('logit,x,expected', [(100.0, 1.0, 0.0), (-100.0, 0.0, 0.0), (100.0, 0.0, 100.0),
                                               (-100.0, 1.0, 100.0)])
def test_bernoulli_nll_is_stable_at_saturated_logits(logit, x, expected):
  value = losses.bernoulli_nll(jnp.full((1, 1), logit), jnp.full((1, 1), x))
  np.testing.assert_allclose(value, [expected], atol=1e-5)
  grad = jax.grad(lambda lg: losses.bernoulli_nll(lg, jnp.full((1, 1), x)).sum())(jnp.full((1, 1), logit))
  assert np.isfinite(grad).all()


def test_gaussian_kl_closed_form_by_hand():
  mean = jnp.array([[1.0, 0.0]])
  logvar = jnp.array([[0.0, np.log(2.0)]])
  # dim 1: 0.5 * (1 + 1 - 1 - 0) = 0.5; dim 2: 0.5 * (2 + 0 - 1 - log 2)
  expected = 0.5 + 0.5 * (1 - np.log(2.0))
  np.testing.assert_allclose(losses.gaussian_kl(mean, logvar), [expected], rtol=1e-6)


def test_gaussian_kl_matches_monte_carlo():
  mean = jnp.array([[0.5, -1.0, 2.0]])
  logvar = jnp.array([[-1.0, 0.3, 0.0]])
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(0), (400_000, 3))
  log_q = losses.gaussian_log_density(z, mean, logvar)
  log_p = losses.gaussian_log_density(z, 0.0, jnp.zeros_like(z))
  mc = float(jnp.mean(log_q - log_p))
  np.testing.assert_allclose(float(losses.gaussian_kl(mean, logvar)[0]), mc, rtol=1e-2)


def test_gaussian_kl_pair_by_hand_and_special_cases():
  m1, lv1 = jnp.array([[1.0]]), jnp.array([[np.log(4.0)]])   # sigma1 = 2
  m2, lv2 = jnp.array([[0.0]]), jnp.array([[np.log(9.0)]])   # sigma2 = 3
  expected = np.log(3 / 2) + (4 + 1) / (2 * 9) - 0.5
  np.testing.assert_allclose(losses.gaussian_kl_pair(m1, lv1, m2, lv2), [expected], rtol=1e-6)
  mean = jnp.array([[0.3, -0.7]])
  logvar = jnp.array([[0.2, -1.5]])
  np.testing.assert_allclose(losses.gaussian_kl_pair(mean, logvar, mean, logvar), [0.0], atol=1e-6)
  np.testing.assert_allclose(
      losses.gaussian_kl_pair(mean, logvar, jnp.zeros_like(mean), jnp.zeros_like(mean)),
      losses.gaussian_kl(mean, logvar), rtol=1e-6)


def test_gaussian_log_density_matches_scipy_formula():
  z, mean, logvar = np.array([0.5, 1.0]), np.array([0.0, 2.0]), np.array([0.0, np.log(0.25)])
  var = np.exp(logvar)
  expected = np.sum(-0.5 * np.log(2 * np.pi * var) - (z - mean) ** 2 / (2 * var))
  np.testing.assert_allclose(losses.gaussian_log_density(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar)),
                             expected, rtol=1e-6)


def test_iwae_bound_is_log_mean_exp():
  log_w = jnp.array([[0.0, -1.0], [np.log(3.0), -1.0]])  # [K=2, B=2]
  np.testing.assert_allclose(losses.iwae_bound(log_w), [np.log(2.0), -1.0], rtol=1e-6)
  np.testing.assert_allclose(losses.iwae_bound(log_w[:1]), log_w[0])  # K = 1: the ELBO term


def test_masked_mean_ignores_padding():
  values = jnp.array([1.0, 3.0, 100.0])
  assert float(losses.masked_mean(values, jnp.array([1.0, 1.0, 0.0]))) == 2.0
  assert float(losses.masked_mean(values, None)) == pytest.approx(104 / 3)
  assert float(losses.masked_sum(values, jnp.array([1.0, 0.0, 1.0]))) == 101.0


def test_decoder_mean_and_reconstruction_dispatch():
  out = jnp.array([[0.0, 2.0]]).reshape(1, 1, 2, 1)  # one image [B, H, W, C]
  np.testing.assert_allclose(losses.decoder_mean(out, 'bernoulli').ravel(), [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)
  np.testing.assert_allclose(losses.decoder_mean(out, 'gaussian').ravel(), [0.0, 1.0])
  x = jnp.array([[0.0, 1.0]]).reshape(1, 1, 2, 1)
  np.testing.assert_allclose(losses.reconstruction_nll(out, x, 'gaussian'), losses.squared_error(out, x))
  np.testing.assert_allclose(losses.reconstruction_nll(out, x, 'bernoulli'), losses.bernoulli_nll(out, x))


@pytest.mark.parametrize('likelihood', ['bernoulli', 'gaussian'])
def test_reconstruction_nll_over_k_samples_broadcasts_the_target(likelihood):
  out = jax.random.normal(jax.random.key(0), (3, 5, 4, 4, 1))
  x = jax.random.uniform(jax.random.key(1), (5, 4, 4, 1))
  per_k = jnp.stack([losses.reconstruction_nll(o, x, likelihood) for o in out])
  np.testing.assert_allclose(losses.reconstruction_nll(out, x[None], likelihood, batch_ndim=2), per_k, rtol=1e-6)
