"""`jaxae.load`: a run's model without its data or the training loop, and runs written by earlier jaxae rounds."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny

from jaxae import data, metrics, models, steps
from jaxae.errors import UserError
from jaxae.loop import formats, scan, train
from jaxae.runs import load

FIXTURES = Path(__file__).parent / 'fixtures'


def _write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
  folder.mkdir()
  header = lambda a: bytes([0, 0, 8, a.ndim]) + b''.join(int(d).to_bytes(4, 'big') for d in a.shape)
  for name, a in (('train-images-idx3-ubyte', images), ('train-labels-idx1-ubyte', labels)):
    (folder / name).write_bytes(header(a) + a.astype(np.uint8).tobytes())


@pytest.mark.parametrize('name', ['vae', 'aae', 'gan'])
def test_a_run_loads_with_its_dataset_gone_and_no_training_step_traced(tmp_path, monkeypatch, name):
  digits = data.load_digits()['train']
  _write_idx(tmp_path / 'idx', (digits['image'][:400, ..., 0] * 255).astype(np.uint8), digits['label'][:400])
  result = train.train_and_evaluate(tiny(model=name, epochs=1, dataset='idx', data_dir=str(tmp_path / 'idx')),
                                    tmp_path / 'run', progress=False)
  assert result.config['input_shape'] == (8, 8, 1)
  shutil.rmtree(tmp_path / 'idx')
  model = models.get(name)
  fail = lambda *a, **k: pytest.fail('load prepared data or traced a training step')
  monkeypatch.setattr(data, 'prepare', fail)
  monkeypatch.setattr(model, 'train_step', fail)
  loaded = load(tmp_path / 'run')
  assert loaded.step == result.records[-1]['step'] and loaded.config['model'] == name
  for a, b in zip(jax.tree.leaves(loaded.state.params), jax.tree.leaves(result.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  if models.can(model, 'sample'):
    images = steps.bind(model.sample, loaded.config)(loaded.state, jax.random.key(0), 5)
    assert images.shape == (5, 8, 8, 1) and np.isfinite(images).all()
  if models.can(model, 'encode'):
    z = model.encode(loaded.state, digits['image'][:5])
    assert steps.bind(model.decode, loaded.config)(loaded.state, z).shape == (5, 8, 8, 1)
  monkeypatch.undo()
  with pytest.raises(UserError, match="IDX directory .* does not exist"):
    _ = loaded.splits  # the data, asked for, are gone: one line saying so


@pytest.mark.parametrize('name', ['vae', 'gan'])
@pytest.mark.parametrize('version', [1, 2])
def test_a_run_written_by_an_older_jaxae_loads_and_evaluates_to_its_logged_numbers(tmp_path, name, version):
  """tests/fixtures/run_format1_*: runs of format 1 (one-item `{'state', 'sums'}` checkpoints, no input_shape in
  config.json); run_format2_*: format 2 (before states carried batch statistics, `prng_impl` unresolved). Read
  through `jaxae.loop.formats.migrate`, their held-out metrics, recomputed from the loaded parameters, equal
  what the run logged; and they resume, in the current format."""
  workdir = tmp_path / 'run'
  shutil.copytree(FIXTURES / f'run_format{version}_{name}', workdir)
  loaded = load(workdir)
  logged = metrics.read(workdir / 'metrics.jsonl')[-1]
  eval_step = steps.bind(loaded.model.eval_step, loaded.config)
  sums = jax.device_get(scan.evaluate(eval_step, loaded.state, {'image': loaded.splits.eval['image']}, loaded.keys.eval,
                                      batch_size=loaded.config['eval_batch_size']))
  for k in loaded.model.HEADLINE:
    np.testing.assert_allclose(float(sums[k]) / float(sums['count']), logged[k], rtol=1e-6)
  resumed = train.train_and_evaluate({**loaded.config, 'epochs': 2}, workdir, progress=False)
  assert [(r['epoch'], r['split']) for r in resumed.records] == [(0, 'eval'), (1, 'train'), (1, 'eval'),
                                                                 (2, 'train'), (2, 'eval')]
  assert int(resumed.state.step) == 14 and load(workdir).step == 14
  rewritten = json.loads((workdir / 'config.json').read_text())
  assert rewritten['format_version'] == formats.RUN_FORMAT and rewritten['prng_impl'] != 'auto'


def test_a_run_not_finished_loads_its_newest_committed_checkpoint_and_says_so(tmp_path, capsys):
  """What a reader of a run in progress (or stopped early) sees: `progress`, and the evaluate script's line."""
  import json

  from test_export import evaluate

  train.train_and_evaluate(tiny(epochs=1, checkpoint_every=10), tmp_path / 'run', progress=False)  # 26 steps
  assert load(tmp_path / 'run').progress == 'step 26 (epoch 1 of 1, finished)'
  config = json.loads((tmp_path / 'run' / 'config.json').read_text())
  (tmp_path / 'run' / 'config.json').write_text(json.dumps({**config, 'epochs': 4}))  # as a longer run would say
  (tmp_path / 'run' / 'checkpoints' / '26').rename(tmp_path / 'run' / 'checkpoints' / '26.orbax-checkpoint-tmp')
  loaded = load(tmp_path / 'run')  # the one being written is not read
  assert loaded.step == 20 and not loaded.finished
  assert loaded.progress == 'step 20 (epoch 0.7692 of 4, not finished: its newest committed checkpoint)'
  assert evaluate.main([str(tmp_path / 'run'), '--suites', 'reconstruction', '--no-progress']) == 0
  assert capsys.readouterr().err == ('evaluate: run: step 20 (epoch 0.7692 of 4, not finished: its newest committed '
                                     'checkpoint)\n')


def test_formats_are_versioned_migrated_one_step_at_a_time_and_newer_ones_refused(tmp_path):
  from conftest import saved_run

  from jaxae import portable, share
  from jaxae.errors import UserError

  v1 = json.loads((FIXTURES / 'run_format1_vae' / 'config.json').read_text())
  v2 = json.loads((FIXTURES / 'run_format2_vae' / 'config.json').read_text())
  assert (formats.version(v1), formats.version(v2)) == (1, 2)
  splits = lambda: data.prepare({**v1, 'hidden': tuple(v1['hidden'])})  # noqa: E731
  to_2 = formats.STEPS[0](v1, FIXTURES / 'run_format1_vae', splits)
  assert to_2['input_shape'] == (8, 8, 1) and to_2['data_fingerprint']['train']['count'] == 1617
  to_3 = formats.STEPS[1](v2, FIXTURES / 'run_format2_vae', splits)
  first_header = metrics.headers(FIXTURES / 'run_format2_vae' / 'metrics.jsonl')[0]
  assert to_3['prng_impl'] == first_header['prng_impl'] and to_3['format_version'] == 3 == formats.RUN_FORMAT
  assert formats.migrate(v1, FIXTURES / 'run_format1_vae', splits)['format_version'] == 3
  with pytest.raises(UserError, match=r'holds a run written by a newer jaxae \(run format 4; this jaxae reads up '
                     r'to 3\): upgrade jaxae to read it'):
    formats.migrate({**v2, 'format_version': 4}, tmp_path, splits)
  saved_run(tmp_path / 'run', 'vae')
  out = share.export(tmp_path / 'run', tmp_path / 'out')
  header = json.loads((out / 'config.json').read_text())
  old = {k: v for k, v in header.items() if k not in ('files', 'progress')} | {'format_version': 1}
  (out / 'config.json').write_text(json.dumps(old))  # an export of format 1: no files listed, no progress
  migrated = portable.read_header(out)
  assert migrated['format_version'] == 2 and migrated['files'] == {} and migrated['progress'] == 'step 7'
  assert load(out).step == 7
