"""The training loop: learning, outputs, resume, reproducibility, compile counts, batching."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import metrics, models
from jaxae.errors import UserError
from jaxae.loop import checkpoint, restore, train
from jaxae.loop.position import Plan


@pytest.mark.parametrize('name', models.with_capability('encode'))
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
  starts = metrics.headers(tmp_path / 'split' / 'metrics.jsonl')  # one header per start, records unchanged
  assert [h['start_step'] for h in starts] == [0, 2 * 26]
  assert [h['start_step'] for h in metrics.headers(tmp_path / 'full' / 'metrics.jsonl')] == [0]
  assert starts[0]['backend'] == jax.default_backend() and starts[0]['devices'] == 1
  assert starts[0]['prng_impl'] == ('jaxae_threefry2x32' if jax.default_backend() == 'cpu' else 'threefry2x32')


def test_matmul_precision_and_prng_impl_are_settings_a_resume_keeps(tmp_path, monkeypatch):
  """`matmul_precision` is in force while the step is traced and is recorded; 'default' leaves JAX's own setting;
  a resume with another PRNG implementation (other bits) is refused."""
  seen = []
  step = models.get('ae').train_step

  @functools.wraps(step)
  def spy(*args, **kwargs):
    seen.append(jax.config.jax_default_matmul_precision)
    return step(*args, **kwargs)

  monkeypatch.setattr(models.get('ae'), 'train_step', spy)
  config = tiny(model='ae', epochs=1, matmul_precision='highest', prng_impl='rbg')
  train.train_and_evaluate(config, tmp_path, progress=False)
  assert seen and set(seen) == {'highest'}
  header, = metrics.headers(tmp_path / 'metrics.jsonl')
  assert header['matmul_precision'] == 'highest' and header['prng_impl'] == 'rbg'
  with pytest.raises(UserError, match="prng_impl: 'rbg' there, 'threefry2x32' now"):
    train.train_and_evaluate({**config, 'epochs': 2, 'prng_impl': 'threefry2x32'}, tmp_path, progress=False)
  seen.clear()
  with jax.default_matmul_precision('high'):
    train.train_and_evaluate(tiny(model='ae', epochs=1), tmp_path / 'default', progress=False)
  assert set(seen) == {'high'}


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


def test_divergence_stops_with_a_clear_error_and_saves_no_bad_checkpoint(tmp_path):
  with pytest.raises(UserError, match=r'non-finite .* at step \d+ \(epoch 1\); no checkpoint had been saved yet'):
    train.train_and_evaluate(tiny(epochs=3, learning_rate=1e12), tmp_path, progress=False)
  assert list((tmp_path / 'checkpoints').iterdir()) == []
  assert [r['epoch'] for r in metrics.read(tmp_path / 'metrics.jsonl')] == [0]


def poison_vae(monkeypatch, term: str, step: int, value: float) -> None:
  """The VAE's train step reports `value` for `term` at step `step` (its update itself stays finite)."""
  vae = models.get('vae')
  original = vae.train_step

  @functools.wraps(original)
  def poisoned(state, batch, key, **hp):
    new, step_metrics = original(state, batch, key, **hp)
    return new, {**step_metrics, term: jnp.where(state.step == step, value, step_metrics[term])}

  monkeypatch.setattr(vae, 'train_step', poisoned)


def test_a_nan_mid_run_is_named_exactly_from_the_last_checkpoint_and_nothing_after_it_is_saved(tmp_path,
                                                                                                 monkeypatch):
  """The fast chunk of epoch 2 meets a NaN loss at step 30 (a poisoned step, 4 steps past the checkpoint at 26):
  the loop reruns the chunk exact from that checkpoint, names step 30 and the term, and keeps the workdir."""
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  poison_vae(monkeypatch, 'rec', 30, jnp.nan)
  before = {p: p.read_bytes() for p in (tmp_path / 'checkpoints').rglob('*') if p.is_file()}
  with pytest.raises(UserError, match=r'non-finite rec at step 30 \(epoch 2\); the checkpoint at step 26 is the '
                     'last good state and is kept'):
    train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
  assert before == {p: p.read_bytes() for p in (tmp_path / 'checkpoints').rglob('*') if p.is_file()}
  assert [r['epoch'] for r in metrics.read(tmp_path / 'metrics.jsonl')] == [0, 1, 1]


def test_a_nan_chunks_after_the_last_checkpoint_is_named_by_replaying_from_it(tmp_path, monkeypatch):
  """With checkpoints every 3 epochs, epoch 3's fast chunk meets the NaN at step 60 with epoch 2 unsaved: the loop
  replays epoch 2 from the checkpoint at 26, then epoch 3 exact, and names step 60."""
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  poison_vae(monkeypatch, 'kl', 60, jnp.inf)
  with pytest.raises(UserError, match=r'non-finite kl at step 60 \(epoch 3\); the checkpoint at step 26 is the '):
    train.train_and_evaluate(tiny(epochs=4, checkpoint_epochs=3), tmp_path, progress=False)
  assert checkpoint.step_folders(tmp_path / 'checkpoints') == [26]


@pytest.mark.default_codegen
def test_checkpoints_and_evaluations_at_intervals_resume_bitwise(tmp_path):
  """checkpoint_epochs=2 and eval_every=3 over 3 then 5 epochs: checkpoints at epochs 2, 3 (the end), 4 and 5,
  held-out records at 0, 3 and 5, train records every epoch, and the parameters of an uninterrupted run."""
  cadence = {'checkpoint_epochs': 2, 'eval_every': 3, 'keep_checkpoints': 5}
  train.train_and_evaluate(tiny(epochs=3, **cadence), tmp_path / 'split', progress=False)
  resumed = train.train_and_evaluate(tiny(epochs=5, **cadence), tmp_path / 'split', progress=False)
  assert checkpoint.step_folders(tmp_path / 'split' / 'checkpoints') == [52, 78, 104, 130]
  assert [(r['epoch'], r['split']) for r in metrics.read(tmp_path / 'split' / 'metrics.jsonl')] == [
      (0, 'eval'), (1, 'train'), (2, 'train'), (3, 'train'), (3, 'eval'), (4, 'train'), (5, 'train'), (5, 'eval')]
  full = train.train_and_evaluate(tiny(epochs=5), tmp_path / 'full', progress=False)
  for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params), strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_checkpoint_is_due_at_its_interval_in_epochs_or_minutes_and_at_the_end(monkeypatch):
  plan = Plan(epochs=4, steps_per_epoch=30, chunk=10, chunks_per_epoch=3)  # 3 chunks an epoch
  config = {'epochs': 4, 'checkpoint_every': 0, 'checkpoint_epochs': 2, 'checkpoint_minutes': 0.0}

  def policy(last_save: float, **changes):
    monkeypatch.setattr(checkpoint.time, 'monotonic', lambda: last_save)
    made = checkpoint.SavePolicy({**config, **changes}, plan, saved=0, config_due=False)
    monkeypatch.setattr(checkpoint.time, 'monotonic', lambda: 100.0)
    return made

  due = [p for p in range(1, 13) if policy(0.0).due(p)]
  assert due == [6, 12]  # the end of epoch 2, and of the run
  assert policy(10.0, checkpoint_minutes=1.5).due(1)  # 90 s: due mid-epoch
  assert not policy(10.5, checkpoint_minutes=1.5).due(1)
  assert policy(100.0, checkpoint_every=10).due(1)  # every chunk
  assert policy(100.0).due(1, stop=True)  # asked to stop: saved where it is


def test_the_plan_places_chunks_and_steps_and_refuses_a_checkpoint_off_its_boundaries():
  plan = Plan.of({'epochs': 2, 'batch_size': 10, 'checkpoint_every': 4}, n_train=95)  # 10 steps: chunks of 4, 4, 2
  assert (plan.steps_per_epoch, plan.chunk, plan.chunks_per_epoch, plan.total_chunks) == (10, 4, 3, 6)
  assert not plan.whole_chunks and Plan.of({'epochs': 1, 'batch_size': 10, 'checkpoint_every': 0}, 95).whole_chunks
  assert [plan.locate(p) for p in range(6)] == [(1, 0), (1, 4), (1, 8), (2, 0), (2, 4), (2, 8)]
  assert [plan.steps_done(p) for p in range(7)] == [0, 4, 8, 10, 14, 18, 20]
  assert [plan.position_of(plan.steps_done(p), 0) for p in range(7)] == list(range(7))
  assert [p for p in range(7) if plan.ends_epoch(p)] == [0, 3, 6]
  with pytest.raises(UserError, match='the checkpoint at 6 does not fall on a chunk boundary of this run'):
    plan.position_of(6, 6)



def test_dcgan_trains_end_to_end_on_32x32x3_images_of_a_mock_cifar10(tmp_path):
  import tensorflow_datasets as tfds

  from jaxae.runs import load

  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train.train_and_evaluate({'model': 'dcgan', 'dataset': 'cifar10', 'conv_features': (8, 16),
                                       'latent_dim': 8, 'batch_size': 16, 'epochs': 2}, tmp_path, progress=False)
  assert result.config['input_shape'] == (32, 32, 3) and result.records[-1]['step'] == 2 * 3
  assert all(np.isfinite(r['d_loss']) for r in result.records)
  assert (tmp_path / 'figures' / 'samples.png').stat().st_size > 1000
  run = load(tmp_path)  # the model needs no data
  images = run.model.sample(run.state, jax.random.key(0), 5, latent_dim=8, num_classes=0)
  assert images.shape == (5, 32, 32, 3) and 0 <= float(images.min()) <= float(images.max()) <= 1


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


@pytest.mark.default_codegen
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
  read = restore.read(tmp_path / 'checkpoints', 26)['params']  # without a template
  for a, b in zip(jax.tree.leaves(read), jax.tree.leaves(result.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  for f in (tmp_path / 'checkpoints' / '26').rglob('*'):
    if f.is_file() and f.stat().st_size > 0 and 'ocdbt' in str(f):
      f.write_bytes(b'\x00garbage' * 8)
  with pytest.raises(UserError, match="checkpoint 26 in .* cannot be read \\([A-Za-z]+\\): its files are damaged; it "
                     "is the run's only checkpoint: retrain in a new workdir"):
    train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
  assert json.loads((tmp_path / 'config.json').read_text())['epochs'] == 1  # the failed resume wrote nothing
  with pytest.raises(UserError, match='checkpoint 26 in .* cannot be read'):
    restore.read(tmp_path / 'checkpoints', 26)
  for f in (tmp_path / 'checkpoints' / '26').rglob('_METADATA'):
    f.write_text('{not json')
  with pytest.raises(UserError, match='checkpoint 26 in .* cannot be read'):
    restore.read(tmp_path / 'checkpoints', 26)


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
