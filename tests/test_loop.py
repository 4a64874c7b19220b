"""The engine's parts: the step and its guard (fast and exact), the scans, compile-once, streaming = resident."""

import functools
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import config as config_lib
from jaxae import data, models, steps
from jaxae.errors import UserError
from jaxae.loop import make_keys, scan, step
from jaxae.loop.compile import compile_fns

TERMS = ['kl', 'loss', 'nelbo', 'rec']


def test_batch_indices_cover_every_example_once_with_a_masked_partial_batch():
  index, mask = data.batch_indices(jax.random.key(0), 10, 4)
  assert index.shape == mask.shape == (3, 4)
  real = np.asarray(index)[np.asarray(mask) == 1]
  assert sorted(real.tolist()) == list(range(10))
  np.testing.assert_array_equal(mask[-1], [1, 1, 0, 0])
  index, mask = data.batch_indices(None, 3, 8)  # batch larger than the data
  assert index.shape == (1, 8) and float(mask.sum()) == 3


def _probe_step(state, batch, key):
  """A fake family step that reports what the loop fed it."""
  x, m = batch['image'], batch['mask']
  nonbinary = jnp.sum(jnp.mean(x * (1 - x), axis=(1, 2, 3)) * m) / jnp.sum(m)
  return state.replace(step=state.step + 1), {'loss': nonbinary, 'key_bits': jax.random.key_data(key)[-1] * 0.0}


def _label_probe(state, batch, key):
  """A fake family step that counts the real rows whose label is not their image's (image i holds i / 1000,
  its label is i % 7)."""
  wrong = jnp.sum((jnp.mod(jnp.round(batch['image'][:, 0, 0, 0] * 1000), 7) != batch['label']) * batch['mask'])
  return state.replace(step=state.step + 1), {'wrong': wrong}


def test_labels_travel_with_their_images_resident_streamed_and_in_evaluation():
  n = 50
  data_ = {'image': np.broadcast_to((np.arange(n) / 1000)[:, None, None, None], (n, 2, 2, 1)).astype(np.float32),
           'label': (np.arange(n) % 7).astype(np.int32)}
  probe = types.SimpleNamespace(train_step=_label_probe, eval_step=lambda state, batch, key: {
      'wrong': _label_probe(state, batch, key)[1]['wrong'], 'count': jnp.sum(batch['mask'])})
  config = config_lib.resolve(tiny(batch_size=16, stream_steps=2))
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None, params={}, tx=None, opt_state=None)
  keys = make_keys(0)
  for resident in (True, False):  # groups of 2, 2 (the last padded) when streamed
    fns = compile_fns(probe, config, n, resident=resident)
    state, _, sums = fns.chunk(state, data_ if not resident else jax.tree.map(jnp.asarray, data_), 1, 0, keys)
    assert float(sums['count']) == n and float(sums['wrong']) == 0.0
  sums = fns.evaluate(state, data_, keys.eval)
  assert float(sums['count']) == n and float(sums['wrong']) == 0.0
  shuffled = {**data_, 'label': (data_['label'] + 1) % 7}  # the probe does see a mismatch
  assert float(fns.evaluate(state, shuffled, keys.eval)['wrong']) == n


@pytest.mark.parametrize('dynamic', [False, True])
def test_dynamic_binarization_feeds_binary_batches(dynamic):
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None, params={}, tx=None, opt_state=None)
  keys = make_keys(0)
  step_fn = functools.partial(step.step, _probe_step, keys, exact=True, dynamic_binarize=dynamic,
                              skip_nonfinite=False)
  state, _, sums = scan.resident_chunk(step_fn, state, {'image': jnp.full((50, 4, 4, 1), 0.3)}, 1, 0, keys.shuffle,
                                       batch_size=16, chunk=4)
  assert float(sums['count']) == 50 and int(state.step) == 4
  assert (float(sums['loss']) == 0.0) == dynamic


def _poisoned(n=100, batch=16, at=50):
  """`n` random images, example `at` of epoch 1's order (batch 3 for batch 16) poisoned with NaN."""
  index, _ = data.batch_indices(jax.random.fold_in(make_keys(0).shuffle, 1), n, batch)
  x = np.random.default_rng(0).random((n, 8, 8, 1), np.float32)
  clean = x.copy()
  x[int(np.asarray(index).reshape(-1)[at]), 3, 3, 0] = np.nan
  return clean, x


def _fns(nonfinite='stop', **overrides):
  config = {**config_lib.resolve(tiny(batch_size=16, nonfinite=nonfinite)), **overrides}
  model, keys = models.get('vae'), make_keys(0)
  return models.create_state(model, keys.init, config, {'image': np.zeros((1, 8, 8, 1), np.float32)}), keys, config


@pytest.mark.parametrize('nonfinite', ['stop', 'skip'])
def test_the_exact_guard_names_the_first_bad_step_and_stops_or_skips_it(nonfinite):
  """100 examples in 7 batches of 16, batch 3 poisoned: stop freezes the state before it; skip drops it alone."""
  state, keys, config = _fns(nonfinite)
  fns = compile_fns(models.get('vae'), config, 100)
  assert fns.fast == (nonfinite == 'stop') and (fns.chunk is fns.exact) == (nonfinite == 'skip')
  state, guard, sums = fns.exact(state, {'image': jnp.asarray(_poisoned()[1])}, 1, 0, keys)
  assert int(guard.bad_step) == 3 and step.terms(TERMS)[int(guard.bad_term)] == 'kl'
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(state.params))
  if nonfinite == 'stop':
    assert int(state.step) == 3  # frozen at the last good update
    with pytest.raises(UserError, match='non-finite kl at step 3 \\(epoch 1\\)'):
      step.check(jax.device_get(guard), TERMS, float(sums['count']), 1, 'stop')
  else:
    assert int(guard.skipped) == 1 and int(state.step) == 7 - 1
    assert float(sums['count']) == 100 - 16 and np.isfinite(float(sums['loss']))
    step.check(jax.device_get(guard), TERMS, float(sums['count']), 1, 'skip')


@pytest.mark.default_codegen
def test_a_fast_chunk_flags_what_the_exact_guard_names_and_equals_it_when_finite():
  """The fast chunk (stop mode) checks parameters once at its end; on clean data it is the exact chunk's result
  bit for bit; on poisoned data `finite` is false (the loop then reruns the chunk exact)."""
  state, keys, config = _fns()
  fns = compile_fns(models.get('vae'), config, 100)
  clean, poisoned = ({'image': jnp.asarray(a)} for a in _poisoned())
  fast = fns.chunk(jax.tree.map(jnp.copy, state), clean, 1, 0, keys)
  exact = fns.exact(jax.tree.map(jnp.copy, state), clean, 1, 0, keys)
  assert bool(fns.finite(fast[1], fast[0]))
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(exact), strict=True):
    np.testing.assert_array_equal(a, b)
  bad_state, bad_guard, _ = fns.chunk(jax.tree.map(jnp.copy, state), poisoned, 1, 0, keys)
  assert not bool(fns.finite(bad_guard, bad_state)) and int(bad_guard.bad_step) == 3


class _State(NamedTuple):
  params: dict
  step: jax.Array


def test_a_non_finite_parameter_update_is_refused_even_with_finite_metrics():
  def train_step(state, batch, key):  # 1 / 0: infinite params, finite loss
    return _State({'w': state.params['w'] / batch['image'].sum()}, state.step + 1), {'loss': jnp.float32(1.0)}

  state = _State({'w': jnp.ones(3)}, jnp.int32(0))
  batch = {'image': jnp.zeros((2, 1, 1, 1)), 'mask': jnp.ones(2)}
  (new, g), sums = step.step(train_step, make_keys(0), (state, step.init_guard()), batch, exact=True,
                             dynamic_binarize=False, skip_nonfinite=False)
  assert float(sums['count']) == 0 and int(g.bad_step) == 0 and int(new.step) == 0
  assert step.terms(['loss'])[int(g.bad_term)] == 'gradient update'
  np.testing.assert_array_equal(new.params['w'], np.ones(3))
  assert float(sums['loss']) == 0.0
  (new, g), _ = step.step(train_step, make_keys(0), (state, step.init_guard()), batch, exact=False,
                          dynamic_binarize=False, skip_nonfinite=False)
  assert int(g.bad_step) == -1 and not bool(step.finite(g, new))  # fast: caught at the chunk's end


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf, 'inf-inf'])
def test_all_finite_sees_any_nan_or_inf(bad):
  leaf = np.full((3, 5), 0.5, np.float32)
  if bad == 'inf-inf':
    leaf[0, 0], leaf[2, 4] = np.inf, -np.inf  # cancel in a sum to NaN, still caught
  else:
    leaf[1, 2] = bad
  assert not step.all_finite({'a': np.ones(2, np.float32), 'b': leaf})
  assert step.all_finite({'a': np.ones(2, np.float32), 'b': np.full((3, 5), 1e30, np.float32)})
  assert step.all_finite({})


@pytest.mark.default_codegen
@pytest.mark.parametrize('nonfinite', ['stop', 'skip'])
def test_a_streamed_chunk_equals_the_resident_one_also_with_a_nan(nonfinite):
  """Groups of 3, 3 and 1 batches (the last padded, exact): the same state as resident, bit for bit, and the same
  guard, exact or fast; sums agree to rounding (they are summed per group)."""
  state, keys, config = _fns(nonfinite, stream_steps=3)
  model = models.get('vae')
  resident, streamed = compile_fns(model, config, 100), compile_fns(model, config, 100, resident=False)
  for x in _poisoned():
    for kind in ('chunk', 'exact'):
      r = getattr(resident, kind)(jax.tree.map(jnp.copy, state), {'image': jnp.asarray(x)}, 1, 0, keys)
      s = getattr(streamed, kind)(jax.tree.map(jnp.copy, state), {'image': x}, 1, 0, keys)
      assert [int(v) for v in r[1]] == [int(v) for v in s[1]]
      finite = bool(resident.finite(r[1], r[0]))
      assert finite == bool(streamed.finite(s[1], s[0]))
      if finite or kind == 'exact':
        for a, b in zip(jax.tree.leaves(r[0]), jax.tree.leaves(s[0]), strict=True):
          np.testing.assert_array_equal(a, b)
        for k in r[2]:
          np.testing.assert_allclose(s[2][k], r[2][k], rtol=1e-6)


def test_chunks_and_eval_compile_once_padded_or_streamed():
  config = config_lib.resolve(tiny(batch_size=16))
  model, keys = models.get('vae'), make_keys(0)
  x = np.random.default_rng(0).random((100, 8, 8, 1), np.float32)  # 7 batches of 16, the last partial
  state = models.create_state(model, keys.init, config, {'image': x[:1]})
  padded = compile_fns(model, {**config, 'checkpoint_every': 3}, 100)  # chunks of 3: 3, 3, 1 + 2 padding
  assert not padded.fast and (padded.steps, padded.per_epoch) == (3, 3)
  for epoch in (1, 2):
    for start in (0, 3, 6):
      state, _, sums = padded.chunk(state, {'image': jnp.asarray(x)}, epoch, start, keys)
    padded.evaluate(state, {'image': jnp.asarray(x)}, keys.eval)
  assert padded.chunk._cache_size() == 1 and padded.evaluate._cache_size() == 1 and int(state.step) == 14
  streamed = compile_fns(model, {**config, 'stream_steps': 3}, 100, resident=False)  # groups of 3, 3, 1 + padding
  for epoch in (3, 4):
    state, _, sums = streamed.chunk(state, {'image': x}, epoch, 0, keys)
    assert float(sums['count']) == 100
  full_scan, padded_scan = streamed.chunk.args  # fast full groups; the padded last one exact, as `exact` scans
  assert padded_scan is streamed.exact.args[0] and streamed.fast and int(state.step) == 28
  assert padded_scan._cache_size() == 1 and full_scan._cache_size() == 1


def test_the_cpu_only_keys_draw_what_the_standard_keys_draw():
  """`prng.key` (the unrolled hash, a CPU-only speedup) is chosen on CPU alone; the other backends' branch,
  `jax.random.key`, draws the same bits, so a run reproduces across backends' key choice."""
  cpu, other = make_keys(3, backend='cpu'), make_keys(3, backend='gpu')
  assert str(jax.random.key_impl(cpu.step)) == 'jaxae_threefry2x32'
  assert str(jax.random.key_impl(other.step)) == 'threefry2x32'
  assert make_keys(3).step.dtype == (cpu if jax.default_backend() == 'cpu' else other).step.dtype
  for a, b in zip(cpu, other, strict=True):
    k_a, k_b = jax.random.fold_in(a, 7), jax.random.fold_in(b, 7)
    np.testing.assert_array_equal(jax.random.normal(k_a, (64, 128)), jax.random.normal(k_b, (64, 128)))
    np.testing.assert_array_equal(jax.random.bernoulli(k_a, 0.3, (5000,)), jax.random.bernoulli(k_b, 0.3, (5000,)))


@pytest.mark.parametrize('impl', ['threefry2x32', 'rbg', 'unsafe_rbg'])
def test_the_prng_implementation_is_a_setting(impl):
  keys = make_keys(3, impl)
  assert {str(jax.random.key_impl(k)) for k in keys} == {impl}
  same = impl == 'threefry2x32'  # JAX's threefry draws what jaxae's does; rbg draws other bits
  draw = lambda keys: jax.random.normal(jax.random.fold_in(keys.step, 7), (64, 128))  # noqa: E731
  assert np.array_equal(draw(keys), draw(make_keys(3, 'jaxae_threefry2x32'))) == same
