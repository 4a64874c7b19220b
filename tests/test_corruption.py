"""Input corruption: statistics, key behaviour, and the clean-target contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import corruption

X = jax.random.uniform(jax.random.key(0), (64, 28, 28, 1))


@pytest.mark.parametrize('kind,level', [('gaussian', 0.3), ('masking', 0.25), ('salt_and_pepper', 0.2)])
def test_same_key_same_noise_other_key_other_noise(kind, level):
  a = corruption.corrupt(X, jax.random.key(1), kind, level)
  b = corruption.corrupt(X, jax.random.key(1), kind, level)
  c = corruption.corrupt(X, jax.random.key(2), kind, level)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == X.shape and a.dtype == X.dtype


def test_gaussian_noise_has_the_requested_std():
  noise = corruption.gaussian(X, jax.random.key(3), 0.3) - X
  assert abs(float(noise.std()) - 0.3) < 0.005 and abs(float(noise.mean())) < 0.005


def test_masking_zeroes_the_requested_fraction_and_keeps_the_rest():
  y = corruption.masking(X, jax.random.key(4), 0.25)
  changed = y != X
  assert abs(float(changed.mean()) - 0.25) < 0.01
  assert float(jnp.abs(y[changed]).max()) == 0.0


def test_salt_and_pepper_sets_the_requested_fraction_to_0_or_1():
  x = jnp.full((64, 28, 28, 1), 0.5)
  y = corruption.salt_and_pepper(x, jax.random.key(5), 0.2)
  hit = y != 0.5
  assert abs(float(hit.mean()) - 0.2) < 0.01
  values = np.unique(np.asarray(y[hit]))
  np.testing.assert_array_equal(values, [0.0, 1.0])
  assert abs(float(y[hit].mean()) - 0.5) < 0.02


def test_none_is_the_identity():
  assert corruption.corrupt(X, jax.random.key(0), 'none', 0.9) is X
