"""jaxae.prng: JAX's threefry2x32 bits from an unrolled hash."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import prng


def test_threefry2x32_matches_the_known_answers_of_random123():
  # Salmon et al. (SC 2011), Random123 known-answer tests for threefry2x32_20
  cases = [((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
           ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
           ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
  for key, count, expected in cases:
    k1, k2, x1, x2 = (jnp.uint32(v) for v in (*key, *count))
    assert tuple(int(y) for y in prng.threefry2x32(k1, k2, x1, x2)) == expected


DRAWS = {
    'uniform': lambda k: jax.random.uniform(k, (3, 5)),
    'normal': lambda k: jax.random.normal(k, (128, 20)),
    'normal_large': lambda k: jax.random.normal(k, (64, 784)),
    'bernoulli': lambda k: jax.random.bernoulli(k, 0.3, (7, 1000)),
    'bits8': lambda k: jax.random.bits(k, (9, 1000), jnp.uint8),
    'bits16': lambda k: jax.random.bits(k, (2, 3), jnp.uint16),
    'scalar': lambda k: jax.random.normal(k, ()),
    'split': lambda k: jax.random.key_data(jax.random.split(k, (2, 3))),
    'fold_in': lambda k: jax.random.key_data(jax.random.fold_in(k, 12345)),
    'permutation': lambda k: jax.random.permutation(k, 100),
    'dropout': lambda k: nn.Dropout(0.5).apply({}, jnp.ones((128, 40)), deterministic=False, rngs={'dropout': k}),
}


@pytest.mark.parametrize('seed', [0, 7, -3, 2**31 - 1])
@pytest.mark.parametrize('draw', list(DRAWS))
def test_keys_draw_exactly_the_bits_of_jax_default_keys(seed, draw):
  f = DRAWS[draw]
  ours, theirs = prng.key(seed), jax.random.key(seed)
  np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(theirs))
  np.testing.assert_array_equal(f(ours), f(theirs))
  np.testing.assert_array_equal(jax.jit(f)(ours), f(theirs))
  assert jax.random.key_impl(jax.random.split(ours)[0]) == jax.random.key_impl(ours)  # derived keys stay ours


def test_64_bit_draws_match_too():
  with jax.enable_x64(True):
    ours, theirs = (jax.random.bits(k, (4096,), jnp.uint64) for k in (prng.key(3), jax.random.key(3)))
    assert ours.dtype == jnp.uint64
    np.testing.assert_array_equal(ours, theirs)


def test_a_draw_compiles_to_one_pass_without_a_loop():
  text = jax.jit(lambda k: jax.random.normal(k, (128, 784))).lower(prng.key(0)).compile().as_text()
  assert ' while(' not in text


def test_a_pytree_of_jaxae_keys_round_trips_through_orbax(tmp_path):
  """Orbax saves a typed key with its implementation's name and restores it by that name (with or without a
  template): jaxae's implementation is registered under `prng.NAME` for this."""
  import orbax.checkpoint as ocp  # noqa: PLC0415

  tree = {'one': prng.key(3), 'several': jax.random.split(prng.key(4), (2, 3)), 'rbg': jax.random.key(5, impl='rbg')}
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / 'keys', tree)
  with ocp.StandardCheckpointer() as ckpt:
    for restored in (ckpt.restore(tmp_path / 'keys'), ckpt.restore(tmp_path / 'keys', tree)):
      for name, key in tree.items():
        assert jax.random.key_impl(restored[name]) == jax.random.key_impl(key), name
        np.testing.assert_array_equal(jax.random.key_data(restored[name]), jax.random.key_data(key))
  assert str(jax.random.key_impl(jax.random.key(0, impl=prng.NAME))) == prng.NAME
