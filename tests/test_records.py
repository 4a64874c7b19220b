"""Records folders (ArrayRecord on disk): writing, lazy reading, streaming training from them, bounded memory."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny

from jaxae import config as config_lib
from jaxae import data
from jaxae.data import records
from jaxae.errors import UserError
from jaxae.loop import train

ROOT = Path(__file__).resolve().parents[1]
DIGITS = data.load_digits()['train']
RAW = (DIGITS['image'] * 255).astype(np.uint8)  # [1797, 8, 8, 1]


@pytest.fixture(scope='module')
def digits_records(tmp_path_factory):
  folder = tmp_path_factory.mktemp('records')
  records.write(folder, 'train', records.chunks_of(RAW[:1500], DIGITS['label'][:1500], size=400))
  records.write(folder, 'test', records.chunks_of(RAW[1500:], DIGITS['label'][1500:]))
  return folder


def test_lazy_images_read_exactly_the_written_pixels(digits_records):
  sets = records.load(digits_records)
  x, labels = sets['train']['image'], sets['train']['label']
  assert data.is_lazy(x) and x.shape == (1500, 8, 8, 1) and x.dtype == np.uint8 and x.nbytes == 1500 * 64
  np.testing.assert_array_equal(labels, DIGITS['label'][:1500])
  index = np.array([7, 3, 1499, 3])
  np.testing.assert_array_equal(x[index], RAW[index])
  np.testing.assert_array_equal(x[5], RAW[5])
  np.testing.assert_array_equal(x[10:20], RAW[10:20])
  view = x.subset(np.arange(100, 200)).subset([0, 99])  # views of views read nothing until indexed
  assert len(view) == 2 and view.shape == (2, 8, 8, 1)
  np.testing.assert_array_equal(view[:], RAW[[100, 199]])
  np.testing.assert_array_equal(np.asarray(sets['test']['image']), RAW[1500:])
  assert json.loads((digits_records / 'meta.json').read_text())['splits'] == {'train': 1500, 'test': 297}


def test_holdout_and_class_filters_give_lazy_views(digits_records):
  config = config_lib.resolve({'dataset': 'records', 'data_dir': str(digits_records), 'train_classes': (3,)})
  splits = data.prepare(config, compact=True)
  assert data.is_lazy(splits.train['image']) and data.is_lazy(splits.eval['image'])
  threes = DIGITS['label'][:1500] == 3
  np.testing.assert_array_equal(splits.train['image'][:], RAW[:1500][threes])
  full = data.prepare(config)  # as jaxae.load gives: read into memory as float32
  np.testing.assert_array_equal(full.train['image'], data.to_float(RAW[:1500][threes]))
  with pytest.raises(UserError, match='binarize=threshold would read the whole records dataset into memory'):
    data.prepare({**config, 'binarize': 'threshold'}, compact=True)


@pytest.mark.parametrize('problem,match', [
    ('no meta', 'is not a records folder'), ('bad meta', 'meta.json is corrupt'),
    ('missing split', "split 'train' is listed but train.array_record"), ('short labels', '5 labels for 20 images'),
])
def test_a_broken_records_folder_is_one_clear_error(tmp_path, problem, match):
  records.write(tmp_path, 'train', [(RAW[:20], DIGITS['label'][:20])])
  if problem == 'no meta':
    (tmp_path / 'meta.json').unlink()
  elif problem == 'bad meta':
    (tmp_path / 'meta.json').write_text('{"format": ')
  elif problem == 'missing split':
    (tmp_path / 'train.array_record').unlink()
  else:
    np.save(tmp_path / 'train-labels.npy', np.zeros(5, np.int32))
  with pytest.raises(UserError, match=match):
    data.load('records', str(tmp_path))


def test_writing_refuses_floats_and_mixed_shapes_and_keeps_what_was_there(tmp_path):
  records.write(tmp_path, 'train', [(RAW[:20], None)])
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
  with pytest.raises(UserError, match='records hold uint8 images'):
    records.write(tmp_path, 'test', [(DIGITS['image'][:5], None)])
  with pytest.raises(UserError, match=r'images of shape \(4, 4, 1\) in a records folder of shape \(8, 8, 1\)'):
    records.write(tmp_path, 'train', [(RAW[:5], None), (RAW[:5, :4, :4], None)])
  with pytest.raises(UserError, match="no images for split 'test'"):
    records.write(tmp_path, 'test', [])
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
  np.testing.assert_array_equal(records.load(tmp_path)['train']['label'], -np.ones(20))


def count_reads(monkeypatch, path_suffix: str, n: int) -> np.ndarray:
  """Counts, per example, the loader's reads (by index array, from any thread) of `Images` whose file ends with
  `path_suffix`; the loop's setup reads its first batch by a slice, to shape the state, and the data's
  fingerprint reads 64 rows one by one (int indices)."""
  counts, lock, read = np.zeros(n, np.int64), threading.Lock(), records.Images.__getitem__

  def counted(self, i):
    if self.path.endswith(path_suffix) and isinstance(i, np.ndarray):
      keys = np.atleast_1d(np.arange(len(self))[i])
      with lock:
        np.add.at(counts, keys if self.index is None else self.index[keys], 1)
    return read(self, i)

  monkeypatch.setattr(records.Images, '__getitem__', counted)
  return counts


def test_streaming_from_records_reads_each_example_once_an_epoch_and_trains_as_in_memory(
    tmp_path, digits_records, monkeypatch):
  own = data.from_arrays(RAW[:1500], DIGITS['label'][:1500], RAW[1500:], DIGITS['label'][1500:])
  config = tiny(epochs=3, binarize='dynamic', stream_steps=4)
  in_memory = train.train_and_evaluate({**config, 'data_mode': 'resident'}, tmp_path / 'mem', progress=False,
                                       data=own)
  counts = count_reads(monkeypatch, 'train.array_record', 1500)
  streamed = train.train_and_evaluate({**config, 'dataset': 'records', 'data_dir': str(digits_records)},
                                      tmp_path / 'rec', progress=False)
  assert (counts == 3).all()  # 3 epochs
  for a, b in zip(jax.tree.leaves(streamed.state.params), jax.tree.leaves(in_memory.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose([r['loss'] for r in streamed.records], [r['loss'] for r in in_memory.records],
                             rtol=1e-6)


def test_make_records_writes_a_synthetic_dataset_and_refuses_bad_input(tmp_path):
  script = [sys.executable, str(ROOT / 'scripts' / 'make_records.py')]
  done = subprocess.run([*script, '--synthetic', '300', '--shape', '6,5,3', '--out', str(tmp_path / 's')],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0 and 'train: 300 examples, test: 30 examples' in done.stdout
  x = records.load(tmp_path / 's')['train']['image']
  assert x.shape == (300, 6, 5, 3) and 0 < np.asarray(x).mean() < 255
  for args, match in ((['--dataset', 'idx', '--data-dir', str(tmp_path / 'none')], 'does not exist'),
                      (['--synthetic', '10', '--shape', '6,5'], 'give H,W,C')):
    bad = subprocess.run([*script, *args, '--out', str(tmp_path / 'b')], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.count('\n') == 1 and match in bad.stderr, bad.stderr



def test_make_records_converts_digits_and_replaces_a_folder_only_when_told(tmp_path, capsys):
  import importlib.util

  spec = importlib.util.spec_from_file_location('make_records', ROOT / 'scripts' / 'make_records.py')
  make_records = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(make_records)
  out = tmp_path / 'digits'
  assert make_records.main(['--dataset', 'digits', '--out', str(out)]) == 0
  written = records.load(out)['train']
  assert written['image'].shape == (1797, 8, 8, 1) and (written['label'] == DIGITS['label']).all()
  np.testing.assert_allclose(np.asarray(written['image']) / 255, DIGITS['image'], atol=1 / 510 + 1e-7)
  before = {p: p.read_bytes() for p in out.iterdir()}
  capsys.readouterr()
  assert make_records.main(['--synthetic', '20', '--out', str(out)]) == 2
  assert capsys.readouterr().err == (f'make_records: error: --out {out} already holds files; give --overwrite to '
                                     'replace them, or another --out\n')
  assert before == {p: p.read_bytes() for p in out.iterdir()}
  mine = tmp_path / 'mine'
  mine.mkdir()
  (mine / 'notes.txt').write_text('mine')
  assert make_records.main(['--synthetic', '20', '--out', str(mine), '--overwrite']) == 2
  assert 'is not a records folder (no meta.json)' in capsys.readouterr().err and (mine / 'notes.txt').exists()
  assert make_records.main(['--synthetic', '20', '--shape', '4,4,1', '--out', str(out), '--overwrite']) == 0
  assert records.load(out)['train']['image'].shape == (20, 4, 4, 1)

MEMORY_PROBE = r'''
import json, sys, threading, time
import numpy as np
from jaxae.data import records
from jaxae.loop import train

def rss():  # the process's own (anonymous) memory: file pages (libraries, the page cache) are not held by it
  status = dict(line.split(':', 1) for line in open('/proc/self/status'))
  return int(status['RssAnon'].split()[0]) * 1024

folder, workdir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
counts, lock, read = np.zeros(n, np.int64), threading.Lock(), records.Images.__getitem__
def counted(self, i):
  if self.path.endswith('train.array_record') and isinstance(i, np.ndarray):
    with lock:
      np.add.at(counts, i, 1)
  return read(self, i)
records.Images.__getitem__ = counted
config = dict(model='ae', dataset='records', data_dir=folder, hidden=(32,), latent_dim=8, epochs=1,
              batch_size=256, eval_batch_size=500, likelihood='gaussian', num_figure_images=8, stream_steps=4,
              read_threads=2)
base, peak, stop = rss(), [0], threading.Event()  # jax and jaxae imported, nothing read or compiled
def sample():
  while not stop.is_set():
    peak[0] = max(peak[0], rss())
    time.sleep(0.002)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
result = train.train_and_evaluate({**config, 'epochs': 2}, workdir, progress=False)
stop.set()
sampler.join()
print(json.dumps({'growth': peak[0] - base, 'base': base, 'min': int(counts.min()), 'max': int(counts.max()),
                  'loss': [r['loss'] for r in result.records]}))
'''


def probe_memory(tmp_path, n: int) -> dict:
  """Streams 2 epochs of `n` generated 32x32x3 images from records in a fresh process; its report."""
  folder = tmp_path / f'records-{n}'
  records.write(folder, 'train', records.synthetic_chunks(n, (32, 32, 3)))
  records.write(folder, 'test', records.synthetic_chunks(1_000, (32, 32, 3), seed=1))
  probe = subprocess.run([sys.executable, '-c', MEMORY_PROBE, str(folder), str(tmp_path / f'run-{n}'), str(n)],
                         capture_output=True, text=True, timeout=600)
  assert probe.returncode == 0, probe.stderr[-3000:]
  return json.loads(probe.stdout.strip().splitlines()[-1])


def test_a_dataset_larger_than_the_memory_cap_streams_in_bounded_memory(tmp_path):
  """Host memory does not follow the dataset: 100,000 images of 32x32x3 (307 MB of pixels, 3.2x the 96 MiB cap)
  take less than 96 MiB more than 20,000 do (61 MB), both trained 2 epochs from records in a fresh process (the
  growth of its own, anonymous, memory from just after import: compiling, reading ahead, the run; ArrayRecord's
  in-memory index of the records is the part that grows, by about 200 bytes an example). Every training
  example is read once in each epoch, and the model learns."""
  small, big = probe_memory(tmp_path, 20_000), probe_memory(tmp_path, 100_000)
  cap = 96 << 20
  assert 100_000 * 32 * 32 * 3 > 3 * cap
  assert big['growth'] - small['growth'] < cap, (small, big)
  for report in (small, big):
    assert report['min'] == report['max'] == 2, report  # each example once in each of the 2 epochs
    evals = report['loss'][0::2]
    assert evals[-1] < 0.9 * evals[0], report['loss']


def test_kills_mid_epoch_while_streaming_records_resume_bitwise(tmp_path):
  records.write(tmp_path / 'rec', 'train', records.synthetic_chunks(3_000, (8, 8, 3)))
  records.write(tmp_path / 'rec', 'test', records.synthetic_chunks(300, (8, 8, 3), seed=1))
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'soak.py'), '--model', 'vae', '--workdir',
                         str(tmp_path / 'soak'), '--cycles', '2', '--epochs', '6', '--checkpoint-every', '10',
                         '--set', 'dataset=records', '--set', f'data_dir={tmp_path / "rec"}',
                         '--set', 'stream_steps=4'], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, (proc.stdout, proc.stderr[-2000:])
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report['ok'] and report['kills'] >= 1 and report['weights_bitwise_identical']
  assert report['checkpoints_restorable'][-1] == 6 * 47  # 3,000 / 64: 47 steps per epoch, 5 chunks of 10


def test_make_records_converts_a_tfds_dataset_a_chunk_at_a_time(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  monkeypatch.syspath_prepend(str(ROOT / 'scripts'))
  import make_records

  monkeypatch.setattr(records, 'source_chunks', lambda source, size=4096, f=records.source_chunks: f(source, 4))  # 3
  with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
    assert make_records.main(['--dataset', 'mnist', '--out', str(tmp_path / 'm')]) == 0
    expected = data.load('mnist')
  sets = records.load(tmp_path / 'm')
  for split in ('train', 'test'):
    np.testing.assert_array_equal(np.asarray(sets[split]['image']), expected[split]['image'])
    np.testing.assert_array_equal(sets[split]['label'], expected[split]['label'])
