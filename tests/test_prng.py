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


def test_a_run_resumes_with_the_prng_it_began_with_on_a_backend_that_prefers_another(tmp_path, monkeypatch):
  """'auto' is resolved once and recorded: a run begun on CPU (jaxae's threefry) and resumed where 'auto' would
  take another implementation (here a backend that says 'gpu', with `jax_default_prng_impl=rbg`) draws on with
  the one it began with, and ends bitwise as if it had never moved (an f32 MLP computes alike on both kernels)."""
  import json

  from conftest import tiny

  from jaxae import metrics
  from jaxae.loop import keys, train

  train.train_and_evaluate(tiny(epochs=1), tmp_path / 'moved', progress=False)
  saved = json.loads((tmp_path / 'moved' / 'config.json').read_text())
  assert saved['prng_impl'] == keys.impl_name('auto') and saved['kernels'] == cpu_kernels()
  default = str(jax.config.jax_default_prng_impl)
  with monkeypatch.context() as elsewhere:
    elsewhere.setattr(jax, 'default_backend', lambda: 'gpu')
    jax.config.update('jax_default_prng_impl', 'rbg')
    try:
      assert keys.impl_name('auto') == 'rbg'  # what a fresh start there would take
      resumed = train.train_and_evaluate(tiny(epochs=2), tmp_path / 'moved', progress=False)
    finally:
      jax.config.update('jax_default_prng_impl', default)
  whole = train.train_and_evaluate(tiny(epochs=2), tmp_path / 'whole', progress=False)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.state.params),
                                                  jax.tree.leaves(whole.state.params), strict=True))
  headers = metrics.headers(tmp_path / 'moved' / 'metrics.jsonl')
  assert [h['prng_impl'] for h in headers] == [saved['prng_impl']] * 2
  assert [h['kernels'] for h in headers] == [cpu_kernels(), 'xla']  # each start's own kernels, recorded


def cpu_kernels() -> str:
  return 'cpu' if jax.default_backend() == 'cpu' else 'xla'


def test_a_jax_whose_private_registry_changed_falls_back_to_its_own_threefry_with_one_warning(monkeypatch):
  from jaxae.loop import keys

  with pytest.warns(RuntimeWarning, match="jaxae's unrolled threefry cannot be registered with this JAX"):
    assert prng.register('jax._src.random.no_such_registry') is False
  monkeypatch.setattr(prng, 'REGISTERED', False)
  assert keys.impl_name('auto', backend='cpu') == str(jax.config.jax_default_prng_impl)
  assert keys.impl_name(prng.NAME) == 'threefry2x32'  # a run that recorded jaxae's: the same bits, JAX's function
  assert np.array_equal(jax.random.key_data(keys.root_key(3, prng.NAME)), jax.random.key_data(jax.random.key(3)))
