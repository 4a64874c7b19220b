"""The training loop: learning, outputs, resume, reproducibility, compile counts, batching."""

import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import checkpoint, epochs, metrics, models, steps, train
from jaxae import config as config_lib
from jaxae import guard as jaxae_guard
from jaxae.errors import UserError


@pytest.mark.parametrize('name', [m for m in models.names() if 'd_loss' not in models.get(m).HEADLINE[:1]])
def test_a_short_run_on_digits_learns(tmp_path, name):
  """Reconstruction losses fall; GANs (no such loss) are tested in test_adversarial.py."""
  result = train.train_and_evaluate(tiny(model=name, epochs=8, learning_rate=3e-3), tmp_path, progress=False)
  evals = [r for r in result.records if r['split'] == 'eval']
  assert [r['epoch'] for r in evals] == list(range(9))
  metric = models.get(name).HEADLINE[0]
  start, end = evals[0][metric], evals[-1][metric]
  assert end < 0.7 * start, (start, end)


def test_outputs_in_the_workdir(tmp_path):
  result = train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
  assert json.loads((tmp_path / 'config.json').read_text())['model'] == 'vae'
  records = metrics.read(tmp_path / 'metrics.jsonl')
  assert records == result.records
  assert [(r['epoch'], r['split']) for r in records] == [(0, 'eval'), (1, 'train'), (1, 'eval'), (2, 'train'),
                                                         (2, 'eval')]
  train_rec = records[1]
  assert {'loss', 'rec', 'kl', 'nelbo', 'seconds', 'examples_per_sec', 'step'} <= set(train_rec)
  assert train_rec['step'] == 26  # ceil(1617 / 64) steps per epoch
  for name in ('reconstructions', 'samples', 'loss'):
    assert (tmp_path / 'figures' / f'{name}.png').stat().st_size > 1000
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [26, 52]  # numbered by steps done


def test_resume_continues_the_step_count_and_matches_an_uninterrupted_run(tmp_path):
  full = train.train_and_evaluate(tiny(epochs=4), tmp_path / 'full', progress=False)
  train.train_and_evaluate(tiny(epochs=2), tmp_path / 'split', progress=False)
  resumed = train.train_and_evaluate(tiny(epochs=4), tmp_path / 'split', progress=False)
  assert int(resumed.state.step) == int(full.state.step) == 4 * 26
  epochs = [(r['epoch'], r['split']) for r in metrics.read(tmp_path / 'split' / 'metrics.jsonl')]
  assert epochs == [(r['epoch'], r['split']) for r in full.records]
  for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert full.records[-1]['loss'] == resumed.records[-1]['loss']


def test_same_seed_gives_bitwise_identical_params(tmp_path):
  a = train.train_and_evaluate(tiny(model='dae'), tmp_path / 'a', progress=False)
  b = train.train_and_evaluate(tiny(model='dae'), tmp_path / 'b', progress=False)
  c = train.train_and_evaluate(tiny(model='dae', seed=1), tmp_path / 'c', progress=False)
  for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(jax.tree.leaves(a.state.params)[0], jax.tree.leaves(c.state.params)[0])


def test_a_workdir_with_another_config_is_refused_and_kept(tmp_path):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
  with pytest.raises(UserError, match='another config.*beta'):
    train.train_and_evaluate(tiny(epochs=1, beta=0.5), tmp_path, progress=False)
  assert before == {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}


def test_epoch_and_eval_compile_once(tmp_path):
  config = config_lib.resolve(tiny())
  model = models.get('vae')
  x = jnp.asarray(np.random.default_rng(0).random((100, 8, 8, 1), np.float32))
  keys = epochs.make_keys(0)
  state = model.create_state(keys.init, config, {'image': x[:1]})
  chunk_fn, eval_fn = epochs.compile_fns(model, {**config, 'checkpoint_every': 3}, 100)  # 2 batches: 3 + pad
  for epoch in (1, 2, 3):
    state, _, _ = chunk_fn(state, x, epoch, 0, keys)
    eval_fn(state, x, keys.eval)
  assert chunk_fn._cache_size() == 1 and eval_fn._cache_size() == 1


def test_batch_indices_cover_every_example_once_with_a_masked_partial_batch():
  index, mask = epochs.batch_indices(jax.random.key(0), 10, 4)
  assert index.shape == mask.shape == (3, 4)
  real = np.asarray(index)[np.asarray(mask) == 1]
  assert sorted(real.tolist()) == list(range(10))
  np.testing.assert_array_equal(mask[-1], [1, 1, 0, 0])
  index, mask = epochs.batch_indices(None, 3, 8)  # batch larger than the data
  assert index.shape == (1, 8) and float(mask.sum()) == 3


def _probe_step(state, batch, key):
  """A fake step that reports what the loop fed it."""
  x, m = batch['image'], batch['mask']
  nonbinary = jnp.sum(jnp.mean(x * (1 - x), axis=(1, 2, 3)) * m) / jnp.sum(m)
  return state.replace(step=state.step + 1), {'loss': nonbinary, 'key_bits': jax.random.key_data(key)[-1] * 0.0}


@pytest.mark.parametrize('dynamic', [False, True])
def test_dynamic_binarization_feeds_binary_batches(dynamic):
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), apply_fn=None, params={}, tx=None, opt_state=None)
  x = jnp.full((50, 4, 4, 1), 0.3)
  keys = epochs.make_keys(0)
  _, sums, _ = epochs.train_chunk(_probe_step, state, x, 1, 0, keys, batch_size=16, chunk=4,
                                 dynamic_binarize=dynamic)
  assert float(sums['count']) == 50
  assert (float(sums['loss']) == 0.0) == dynamic


def test_divergence_stops_with_a_clear_error_and_saves_no_bad_checkpoint(tmp_path):
  with pytest.raises(UserError, match=r'non-finite .* at step \d+ \(epoch 1\); no checkpoint had been saved yet'):
    train.train_and_evaluate(tiny(epochs=3, learning_rate=1e12), tmp_path, progress=False)
  assert list((tmp_path / 'checkpoints').iterdir()) == []
  assert [r['epoch'] for r in metrics.read(tmp_path / 'metrics.jsonl')] == [0]


def _nan_epoch(skip):
  """One epoch of the tiny VAE on 100 examples (7 batches of 16), the 51st in epoch order poisoned with NaN."""
  config = config_lib.resolve(tiny())
  model = models.get('vae')
  keys = epochs.make_keys(0)
  index, _ = epochs.batch_indices(jax.random.fold_in(keys.shuffle, 1), 100, 16)
  poisoned = int(np.asarray(index).reshape(-1)[50])  # in batch 3, not among the padding repeats
  x = np.random.default_rng(0).random((100, 8, 8, 1), np.float32)
  x[poisoned, 3, 3, 0] = np.nan
  state = model.create_state(keys.init, config, {'image': x[:1]})
  epoch_fn = jax.jit(functools.partial(epochs.train_chunk, steps.bind(model.train_step, config), batch_size=16,
                                       chunk=7, skip_nonfinite=skip))
  return epoch_fn(state, jnp.asarray(x), 1, 0, keys), 3


def test_an_injected_nan_batch_is_caught_in_the_compiled_step_and_stops_at_the_last_good_state():
  (state, sums, guard), bad_batch = _nan_epoch(skip=False)
  assert int(guard.bad_step) == bad_batch
  assert jaxae_guard.terms(['kl', 'loss', 'nelbo', 'rec'])[int(guard.bad_term)] == 'kl'
  assert int(state.step) == bad_batch  # frozen at the last good update
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(state.params))
  with pytest.raises(UserError, match=f'non-finite kl at step {bad_batch} \\(epoch 1\\)'):
    jaxae_guard.check(jax.device_get(guard), ['kl', 'loss', 'nelbo', 'rec'], float(sums['count']), 1, 'stop')


@pytest.mark.parametrize('skip', [False, True])
def test_the_unguarded_chunk_is_replayed_guarded_when_it_meets_a_nan(skip):
  """compile_fns runs whole-epoch chunks without the per-step guard; a NaN makes it rerun the chunk guarded from
  the same state, so the result is the guard's, bit for bit. Without a NaN it equals the guarded chunk too."""
  (expected, expected_sums, expected_guard), _ = _nan_epoch(skip=skip)
  config = {**config_lib.resolve(tiny()), 'batch_size': 16, 'nonfinite': 'skip' if skip else 'stop'}
  model, keys = models.get('vae'), epochs.make_keys(0)
  index, _ = epochs.batch_indices(jax.random.fold_in(keys.shuffle, 1), 100, 16)
  x = np.random.default_rng(0).random((100, 8, 8, 1), np.float32)
  clean = jnp.asarray(x)
  x[int(np.asarray(index).reshape(-1)[50]), 3, 3, 0] = np.nan
  chunk_fn, _ = epochs.compile_fns(model, config, 100)  # 7 batches, one chunk: no padding, the unguarded path
  initial = model.create_state(keys.init, config, {'image': x[:1]})
  fresh = lambda: jax.tree.map(jnp.copy, initial)  # noqa: E731  (the same static fields: no retrace)
  state, sums, g = chunk_fn(fresh(), jnp.asarray(x), 1, 0, keys)
  assert (int(g.bad_step), int(g.bad_term), int(g.skipped)) == (
      int(expected_guard.bad_step), int(expected_guard.bad_term), int(expected_guard.skipped))
  for a, b in zip(jax.tree.leaves((state, sums)), jax.tree.leaves((expected, expected_sums)), strict=True):
    np.testing.assert_array_equal(a, b)
  assert chunk_fn._cache_size() == 2  # the unguarded program, then the guarded one for the replay
  state, sums, g = chunk_fn(fresh(), clean, 1, 0, keys)
  guarded = jax.jit(functools.partial(epochs.train_chunk, steps.bind(model.train_step, config), batch_size=16,
                                      chunk=7, skip_nonfinite=skip))(fresh(), clean, 1, 0, keys)
  assert int(g.bad_step) == -1 and chunk_fn._cache_size() == 2  # no replay: nothing compiled again
  for a, b in zip(jax.tree.leaves((state, sums)), jax.tree.leaves(guarded[:2]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('skip', [False, True])
def test_a_streamed_chunk_that_meets_a_nan_is_replayed_guarded(skip):
  """Streaming runs its groups unguarded too; a NaN reruns the chunk guarded from its input state: the guard's
  result, bit for bit, as resident."""
  (expected, expected_sums, expected_guard), _ = _nan_epoch(skip=skip)
  config = {**config_lib.resolve(tiny()), 'batch_size': 16, 'nonfinite': 'skip' if skip else 'stop',
            'stream_steps': 3}  # 7 batches: groups of 3, 3 and 1 (padded, guarded)
  model, keys = models.get('vae'), epochs.make_keys(0)
  index, _ = epochs.batch_indices(jax.random.fold_in(keys.shuffle, 1), 100, 16)
  x = np.random.default_rng(0).random((100, 8, 8, 1), np.float32)
  x[int(np.asarray(index).reshape(-1)[50]), 3, 3, 0] = np.nan
  state = model.create_state(keys.init, config, {'image': x[:1]})
  zero = epochs.zero_sums(steps.bind(model.train_step, config), state, x[:16], keys)
  chunk_fn, _ = epochs.compile_fns(model, config, 100, zero=zero, resident=False)
  state, sums, g = chunk_fn(state, x, 1, 0, keys)
  assert (int(g.bad_step), int(g.bad_term), int(g.skipped)) == (
      int(expected_guard.bad_step), int(expected_guard.bad_term), int(expected_guard.skipped))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(a, b)
  for k in expected_sums:
    np.testing.assert_allclose(sums[k], expected_sums[k], rtol=1e-6)  # summed per group


def test_skip_mode_drops_only_the_bad_update():
  (state, sums, guard), _ = _nan_epoch(skip=True)
  assert int(guard.skipped) == 1 and int(state.step) == 7 - 1  # 7 batches, one skipped
  assert all(np.isfinite(p).all() for p in jax.tree.leaves(state.params))
  assert float(sums['count']) == 100 - 16 and np.isfinite(float(sums['loss']))
  jaxae_guard.check(jax.device_get(guard), ['kl', 'loss', 'nelbo', 'rec'], float(sums['count']), 1, 'skip')


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf, 'inf-inf'])
def test_all_finite_sees_any_nan_or_inf(bad):
  leaf = np.full((3, 5), 0.5, np.float32)
  if bad == 'inf-inf':
    leaf[0, 0], leaf[2, 4] = np.inf, -np.inf  # cancel in a sum to NaN, still caught
  else:
    leaf[1, 2] = bad
  assert not jaxae_guard.all_finite({'a': np.ones(2, np.float32), 'b': leaf})
  assert jaxae_guard.all_finite({'a': np.ones(2, np.float32), 'b': np.full((3, 5), 1e30, np.float32)})
  assert jaxae_guard.all_finite({})


class _State(NamedTuple):
  params: dict
  step: jax.Array


def test_a_non_finite_parameter_update_is_refused_even_with_finite_metrics():
  def train_step(state, batch, key):  # 1 / 0: infinite params, finite loss
    return _State({'w': state.params['w'] / batch['image'].sum()}, state.step + 1), {'loss': jnp.float32(1.0)}

  state = _State({'w': jnp.ones(3)}, jnp.int32(0))
  batch = {'image': jnp.zeros(2), 'mask': jnp.ones(2)}
  new, g, metrics, applied = jaxae_guard.guarded_step(train_step, state, jaxae_guard.init(), batch, None,
                                                      skip_nonfinite=False)
  assert not bool(applied) and int(g.bad_step) == 0 and int(new.step) == 0
  assert jaxae_guard.terms(['loss'])[int(g.bad_term)] == 'gradient update'
  np.testing.assert_array_equal(new.params['w'], np.ones(3))
  assert float(metrics['loss']) == 0.0


def test_a_full_run_on_a_tfds_dataset_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train.train_and_evaluate(tiny(model='ae', dataset='mnist', batch_size=16, likelihood='gaussian'),
                                      tmp_path, progress=False)
  assert result.records[-1]['step'] == 2 * 3  # 40 train examples in batches of 16, two epochs
  assert (tmp_path / 'figures' / 'reconstructions.png').exists()


def test_metrics_log_keeps_only_epochs_covered_by_the_checkpoint(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"epoch": 0, "split": "eval"}\n{"epoch": 1, "split": "train"}\n{"epoch": 2, "spl')
  assert [r['epoch'] for r in metrics.MetricsLog(path, 1).records] == [0, 1]  # torn last line dropped
  assert metrics.read(path) == [{'epoch': 0, 'split': 'eval'}, {'epoch': 1, 'split': 'train'}]
  assert metrics.MetricsLog(path, -1).records == [] and metrics.read(path) == []


def test_mid_epoch_checkpoints_resume_bitwise_with_exact_epoch_metrics(tmp_path):
  """26 steps per epoch in chunks of 5: 6 chunks per epoch, the last one padded with no-op batches."""
  plain = train.train_and_evaluate(tiny(epochs=2), tmp_path / 'plain', progress=False)
  chunked = tiny(epochs=2, checkpoint_every=5, keep_checkpoints=20)
  reference = train.train_and_evaluate(chunked, tmp_path / 'ref', progress=False)
  assert int(reference.state.step) == 2 * 26
  for a, b in zip(jax.tree.leaves(plain.state.params), jax.tree.leaves(reference.state.params), strict=True):
    np.testing.assert_array_equal(a, b)  # chunking changes nothing
  assert sorted(int(p.name) for p in (tmp_path / 'ref' / 'checkpoints').iterdir()) == [5, 10, 15, 20, 25, 26, 31, 36,
                                                                                     41, 46, 51, 52]  # steps done

  import shutil
  shutil.copytree(tmp_path / 'ref', tmp_path / 'cut')
  for done in (46, 51, 52):  # as if killed right after the checkpoint of chunk 3 of epoch 2 (41 steps)
    shutil.rmtree(tmp_path / 'cut' / 'checkpoints' / str(done))
  resumed = train.train_and_evaluate(chunked, tmp_path / 'cut', progress=False)
  for a, b in zip(jax.tree.leaves(reference.state.params), jax.tree.leaves(resumed.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  timing = ('seconds', 'examples_per_sec')
  strip = lambda records: [{k: v for k, v in r.items() if k not in timing} for r in records]
  assert strip(resumed.records) == strip(reference.records)  # epoch 2 sums carried through the checkpoint


def test_a_corrupt_config_json_is_a_user_error_and_is_kept(tmp_path):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  (tmp_path / 'config.json').write_text('{"model": "vae", ')
  with pytest.raises(UserError, match='config.json is not a valid config'):
    train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  assert (tmp_path / 'config.json').read_text() == '{"model": "vae", '


def test_a_corrupt_checkpoint_is_a_user_error_naming_it(tmp_path):
  result = train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  with checkpoint.Checkpointer(tmp_path / 'checkpoints') as ckpt:
    read = ckpt.read(26)['state']['params']  # without a template
  for a, b in zip(jax.tree.leaves(read), jax.tree.leaves(result.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  for f in (tmp_path / 'checkpoints' / '26').rglob('*'):
    if f.is_file() and f.stat().st_size > 0 and 'ocdbt' in str(f):
      f.write_bytes(b'\x00garbage' * 8)
  with pytest.raises(UserError, match='checkpoint 26 in .* cannot be read.*delete that step folder'):
    train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
  assert json.loads((tmp_path / 'config.json').read_text())['epochs'] == 1  # the failed resume wrote nothing
  with checkpoint.Checkpointer(tmp_path / 'checkpoints') as ckpt:
    with pytest.raises(UserError, match='checkpoint 26 in .* cannot be read'):
      ckpt.read(26)
    for f in (tmp_path / 'checkpoints' / '26').rglob('_METADATA'):
      f.write_text('{not json')
    with pytest.raises(UserError, match='checkpoint 26 in .* cannot be read'):
      ckpt.read(26)


def test_inf_in_the_data_is_refused():
  from jaxae import data
  x = np.zeros((3, 4, 4, 1), np.float32)
  x[1, 2, 2, 0] = np.inf
  with pytest.raises(UserError, match='NaN or Inf'):
    data.check_images({'image': x}, 'gaussian', 'idx train set')


@pytest.mark.parametrize('name', ['vae', 'dropout_ae'])
def test_streaming_reproduces_the_resident_run(tmp_path, name):
  resident = train.train_and_evaluate(tiny(model=name, data_mode='resident'), tmp_path / 'r', progress=False)
  streamed = train.train_and_evaluate(tiny(model=name, data_mode='streaming'), tmp_path / 's', progress=False)
  assert [(r['epoch'], r['split'], r['step']) for r in streamed.records] == [
      (r['epoch'], r['split'], r['step']) for r in resident.records]
  np.testing.assert_allclose([r['loss'] for r in streamed.records], [r['loss'] for r in resident.records],
                             rtol=1e-5)


def test_streaming_groups_compile_once_across_epochs_and_the_partial_batch():
  config = config_lib.resolve(tiny())
  model = models.get('vae')
  x = np.random.default_rng(0).random((100, 8, 8, 1), np.float32)  # 2 batches of 64, the last partial
  keys = epochs.make_keys(0)
  state = model.create_state(keys.init, config, {'image': x[:1]})
  zero = epochs.zero_sums(steps.bind(model.train_step, config), state, x[:64], keys)
  fns = epochs.make_stream_fns(steps.bind(model.train_step, config))
  for epoch in (1, 2):  # groups of one batch: both full, so the unguarded scan alone
    state, sums, _ = epochs.stream_chunk(fns, zero, state, x, epoch, 0, keys, batch_size=64, chunk=2, group=1)
    assert float(sums['count']) == 100
  assert fns.fast._cache_size() == 1 and fns.guarded._cache_size() == 0 and int(state.step) == 4
  state, sums, _ = epochs.stream_chunk(fns, zero, state, x, 3, 0, keys, batch_size=64, chunk=4, group=3)
  assert float(sums['count']) == 100 and int(state.step) == 6  # padded group of 3: guarded, padding a no-op
  assert fns.guarded._cache_size() == 1
