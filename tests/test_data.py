"""Data sources (digits, IDX, TFDS under mock_data), splits, binarization and checks."""

import gzip
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxae import data
from jaxae.errors import UserError


def write_idx(path, array, gz=False, type_code=None):
  codes = {np.dtype('uint8'): 0x08, np.dtype('>f4'): 0x0D}
  array = np.asarray(array)
  if array.dtype == np.float32:
    array = array.astype('>f4')
  header = bytes([0, 0, type_code or codes[array.dtype], array.ndim])
  header += np.array(array.shape, '>u4').tobytes()
  opener = gzip.open if gz else open
  with opener(path, 'wb') as f:
    f.write(header + array.tobytes())


def test_digits_is_real_data_in_unit_range():
  d = data.load_digits()['train']
  assert d['image'].shape == (1797, 8, 8, 1) and d['image'].dtype == np.float32
  assert d['image'].min() == 0 and d['image'].max() == 1
  assert set(np.unique(d['label'])) == set(range(10))


def test_digits_read_from_the_csv_equal_scikit_learns_also_when_the_csv_is_not_found(monkeypatch):
  from sklearn.datasets import load_digits

  sk = load_digits()
  expected = {'image': (sk.images[..., None] / 16.0).astype(np.float32), 'label': sk.target.astype(np.int32)}
  from_csv = data.load_digits()['train']
  monkeypatch.setattr('importlib.util.find_spec', lambda name: None)
  through_sklearn = data.load_digits()['train']
  for d in (from_csv, through_sklearn):
    assert d['image'].dtype == np.float32 and d['label'].dtype == np.int32
    np.testing.assert_array_equal(d['image'], expected['image'])
    np.testing.assert_array_equal(d['label'], expected['label'])


@pytest.mark.parametrize('gz', [False, True])
def test_idx_round_trip(tmp_path, gz):
  images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
  labels = np.array([3, 1, 4, 1, 5], np.uint8)
  suffix = '.gz' if gz else ''
  write_idx(tmp_path / f'train-images-idx3-ubyte{suffix}', images, gz)
  write_idx(tmp_path / f'train-labels-idx1-ubyte{suffix}', labels, gz)
  np.testing.assert_array_equal(data.read_idx(tmp_path / f'train-images-idx3-ubyte{suffix}'), images)
  sets = data.load_idx_dir(tmp_path)
  assert sets['test'] is None
  np.testing.assert_array_equal(sets['train']['image'][..., 0], images)  # pixels kept as uint8
  np.testing.assert_allclose(data.to_float(sets['train']['image'])[..., 0], images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(sets['train']['label'], labels)


def test_idx_float_payload(tmp_path):
  arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 2, 2)
  write_idx(tmp_path / 'x', arr)
  np.testing.assert_array_equal(data.read_idx(tmp_path / 'x'), arr)


@pytest.mark.parametrize('payload,match', [
    (b'', 'bad magic'),
    (b'\x12\x34\x08\x03', 'bad magic'),
    (b'\x00\x00\x42\x01\x00\x00\x00\x01', 'type 0x42'),
    (b'\x00\x00\x08\x03\x00\x00', 'truncated IDX header'),
    (b'\x00\x00\x08\x01\x00\x00\x00\x05abc', 'truncated'),
    (b'\x00\x00\x08\x01\x00\x00\x00\x02abc', 'longer than'),
    (b'\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff', 'corrupt file'),
])
def test_idx_reader_rejects_corrupt_files(tmp_path, payload, match):
  (tmp_path / 'f').write_bytes(payload)
  with pytest.raises(ValueError, match=match):
    data.read_idx(tmp_path / 'f')


@pytest.mark.parametrize('gz', [False, True])
def test_a_header_claiming_gigabytes_allocates_only_what_is_there(tmp_path, gz):
  import tracemalloc

  header = b'\x00\x00\x08\x03' + np.array([1000, 2000, 2000], '>u4').tobytes()  # 4e9 bytes claimed
  path = tmp_path / ('f.gz' if gz else 'f')
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(header + b'\x01' * 1000)
  tracemalloc.start()
  with pytest.raises(ValueError, match='truncated'):
    data.read_idx(path)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 64 * 2**20


def test_a_header_claiming_10_to_the_12_items_is_refused_before_reading(tmp_path):
  (tmp_path / 'f').write_bytes(b'\x00\x00\x08\x02' + np.array([10**6, 10**6], '>u4').tobytes())
  with pytest.raises(ValueError, match='corrupt file'):
    data.read_idx(tmp_path / 'f')


def test_idx_reader_rejects_a_corrupt_gzip(tmp_path):
  (tmp_path / 'f.gz').write_bytes(b'\x1f\x8b\x08\x00garbage')
  with pytest.raises(ValueError, match='unreadable'):
    data.read_idx(tmp_path / 'f.gz')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_idx_reader_fuzz_random_bytes(tmp_path_factory, payload):
  path = tmp_path_factory.mktemp('fuzz') / 'f'
  path.write_bytes(payload)
  try:
    out = data.read_idx(path)
  except ValueError:
    return
  assert out.size * out.dtype.itemsize == len(payload) - 4 - 4 * out.ndim


def test_idx_dir_errors_are_user_errors(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    data.load_idx_dir(tmp_path / 'missing')
  with pytest.raises(UserError, match='no IDX images'):
    data.load_idx_dir(tmp_path)
  (tmp_path / 't10k-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x03\x00\x00\x00\x09')
  with pytest.raises(UserError, match='replace the file'):
    data.load_idx_dir(tmp_path)
  write_idx(tmp_path / 't10k-images-idx3-ubyte', np.zeros((4, 2, 2), np.uint8))
  write_idx(tmp_path / 't10k-labels-idx1-ubyte', np.zeros((3,), np.uint8))
  with pytest.raises(UserError, match='3 labels for 4 images'):
    data.load_idx_dir(tmp_path)


def test_real_mnist_test_set(mnist_dir):
  sets = data.load('idx', mnist_dir)
  images, labels = sets['test']['image'], sets['test']['label']
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8 and labels.shape == (10000,)
  assert images.min() == 0 and images.max() == 255
  assert np.bincount(labels).min() > 800  # every class present in quantity
  splits = data.holdout_split(sets['test'], 1000, 'tail', 0)
  assert len(splits.train['image']) == 9000
  np.testing.assert_array_equal(splits.eval['label'], labels[9000:])


@pytest.mark.parametrize('name,shape', [('mnist', (28, 28, 1)), ('fashion_mnist', (28, 28, 1)),
                                        ('binarized_mnist', (28, 28, 1)), ('cifar10', (32, 32, 3))])
def test_tfds_under_mock_data(name, shape):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    sets = data.load(name)
  for split in ('train', 'test'):
    images = sets[split]['image']
    assert images.shape == (6, *shape) and images.dtype == np.uint8


def test_unknown_and_unprepared_tfds_datasets_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'no_such_set'"):
    data.load('no_such_set')
  with pytest.raises(UserError, match='not prepared.*network and TensorFlow'):
    data.load('mnist', str(tmp_path))


def test_uint8_pixels_convert_to_the_same_float32_bits_on_host_and_device():
  import jax

  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  host, device = data.to_float(x), np.asarray(jax.jit(data.to_float)(x))
  assert host.dtype == device.dtype == np.float32
  np.testing.assert_array_equal(host.view(np.uint32), device.view(np.uint32))
  assert host.min() == 0 and host.max() == 1 and np.abs(host - x / 255).max() < 1e-7
  floats = np.linspace(0, 1, 5, dtype=np.float32)
  assert data.to_float(floats) is floats


def test_prepare_keeps_uint8_only_when_compact_and_not_statically_binarized():
  from jaxae import config as config_lib

  raw = np.random.default_rng(0).integers(0, 256, (50, 4, 4), dtype=np.uint8)
  sets = data.from_arrays(raw)
  dtypes = {}
  for binarize in ('none', 'dynamic', 'threshold'):
    config = config_lib.resolve({'dataset': 'arrays', 'holdout': 10, 'binarize': binarize})
    for compact in (False, True):
      splits = data.prepare(config, sets, compact)
      dtypes[binarize, compact] = (splits.train['image'].dtype, splits.eval['image'].dtype)
  u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
  assert dtypes == {('none', False): (f32, f32), ('none', True): (u8, u8), ('dynamic', False): (f32, f32),
                    ('dynamic', True): (u8, f32), ('threshold', False): (f32, f32), ('threshold', True): (f32, f32)}
  full = data.prepare(config_lib.resolve({'dataset': 'arrays', 'holdout': 10, 'holdout_order': 'tail'}), sets)
  np.testing.assert_array_equal(full.train['image'], data.to_float(raw[:40, ..., None]))


def test_holdout_split_is_seeded_and_disjoint():
  pool = {'image': np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1), 'label': np.arange(100)}
  a = data.holdout_split(pool, 0.2, 'seeded', 3)
  b = data.holdout_split(pool, 0.2, 'seeded', 3)
  c = data.holdout_split(pool, 0.2, 'seeded', 4)
  assert len(a.eval['label']) == 20 and len(a.train['label']) == 80
  np.testing.assert_array_equal(a.eval['label'], b.eval['label'])
  assert not np.array_equal(a.eval['label'], c.eval['label'])
  assert not set(a.train['label']) & set(a.eval['label'])
  with pytest.raises(UserError, match='holdout'):
    data.holdout_split(pool, 100, 'tail', 0)


def test_binarization_modes():
  x = np.random.default_rng(0).random((1000, 4, 4, 1)).astype(np.float32)
  np.testing.assert_array_equal(data.binarize(x, 'threshold', 0), (x > 0.5))
  s1, s2 = data.binarize(x, 'sample', 1), data.binarize(x, 'sample', 1)
  np.testing.assert_array_equal(s1, s2)
  assert set(np.unique(s1)) == {0.0, 1.0}
  assert abs(s1.mean() - x.mean()) < 0.01
  assert data.binarize(x, 'none', 0) is x
  pixels = (x * 255).astype(np.uint8)
  np.testing.assert_array_equal(data.binarize(pixels, 'threshold', 0), data.to_float(pixels) > 0.5)


def test_check_images_rejects_nan_and_out_of_range_for_bernoulli():
  good = {'image': np.zeros((2, 4, 4, 1), np.float32)}
  data.check_images(good, 'bernoulli', 'x')
  with pytest.raises(UserError, match='NaN'):
    data.check_images({'image': np.full((2, 4, 4, 1), np.nan, np.float32)}, 'gaussian', 'x')
  wide = {'image': np.full((2, 4, 4, 1), 3.0, np.float32)}
  with pytest.raises(UserError, match=r'outside \[0, 1\].*likelihood=gaussian'):
    data.check_images(wide, 'bernoulli', 'x')
  data.check_images(wide, 'gaussian', 'x')


def test_tfds_data_dir_env_is_honoured(monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', os.devnull)
  with pytest.raises(UserError, match=f'not prepared in {os.devnull}'):
    data.load('mnist')
