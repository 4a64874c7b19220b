"""Where datasets come from: `{'train': set or None, 'test': set or None}`, a set being
`{'image': [N, H, W, C], 'label': int32 [N]}` (uint8 pixels when the source stores them so, else float32).

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1,797 images);
  the embedded default, works offline.
- `idx`: a directory of IDX files (`train-images-idx3-ubyte[.gz]`,
  `t10k-images-idx3-ubyte[.gz]` and their labels), as MNIST and
  Fashion-MNIST ship; set `data_dir`.
- `records`: a folder of ArrayRecord files (`jaxae.data.records`; set `data_dir`),
  read lazily: batches come from disk as the loop asks for them.
- any TFDS image dataset (mnist, fashion_mnist, binarized_mnist, cifar10, ...)
  read with `tfds.data_source` (no TensorFlow needed to read a prepared
  dataset); honours `data_dir` and TFDS_DATA_DIR.
- your arrays: `from_arrays`, `from_source`.
"""

import contextlib
import gzip
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from jaxae.data import records
from jaxae.errors import UserError, require

IDX_DTYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
MAX_IDX_BYTES = 1 << 33  # 8 GiB: a header claiming more is corrupt, not a dataset
KNOWN_TFDS = ('mnist', 'fashion_mnist', 'binarized_mnist', 'cifar10', 'kmnist', 'emnist', 'svhn_cropped')


def to_images(raw: np.ndarray) -> np.ndarray:
  """`[N, H, W]` or `[N, H, W, C]` raw pixels -> `[N, H, W, C]`: uint8 kept as uint8, anything else float32
  (range-checked later)."""
  x = raw[..., None] if raw.ndim == 3 else raw
  return x if x.dtype == np.uint8 else x.astype(np.float32)


def _read_at_most(f, n: int, chunk: int = 1 << 24) -> bytes:
  """Reads up to `n` bytes in 16 MiB pieces, so memory follows the data actually there, not `n`."""
  parts, got = [], 0
  while got < n:
    part = f.read(min(chunk, n - got))
    if not part:
      break
    parts.append(part)
    got += len(part)
  return b''.join(parts)


def _open(path: Path):
  return gzip.open(path, 'rb') if path.suffix == '.gz' else open(path, 'rb')


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (optionally gzipped) into an array of its header's shape.

  The header (magic `0x0000TTNN`: type TT, NN dimensions, then NN big-endian
  uint32 sizes) is checked before the payload is read, so a corrupt header
  cannot cause a huge allocation.

  Raises:
    ValueError: bad magic, unknown type, implausible size, truncated or
      oversized payload, or a corrupt gzip stream.
  """
  path = Path(path)
  try:
    with _open(path) as f:
      magic = f.read(4)
      if len(magic) < 4 or magic[:2] != b'\x00\x00':
        raise ValueError(f'{path}: not an IDX file (bad magic {magic.hex() or "<empty>"})')
      type_code, ndim = magic[2], magic[3]
      if type_code not in IDX_DTYPES or not 1 <= ndim <= 4:
        raise ValueError(f'{path}: not an IDX file (type 0x{type_code:02x}, {ndim} dims)')
      header = f.read(4 * ndim)
      if len(header) < 4 * ndim:
        raise ValueError(f'{path}: truncated IDX header')
      shape = tuple(int(d) for d in np.frombuffer(header, '>u4'))
      dtype = np.dtype(IDX_DTYPES[type_code])
      nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
      if nbytes > MAX_IDX_BYTES:
        raise ValueError(f'{path}: IDX header claims {shape}, {nbytes} bytes: corrupt file')
      payload = _read_at_most(f, nbytes + 1)
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise ValueError(f'{path}: unreadable IDX file ({e})') from None
  if len(payload) != nbytes:
    what = 'truncated' if len(payload) < nbytes else 'longer than its header says'
    raise ValueError(f'{path}: IDX payload {what} ({len(payload)} bytes, header says {nbytes})')
  return np.frombuffer(payload, dtype).reshape(shape).astype(dtype.newbyteorder('='))


def _find(directory: Path, prefix: str, kind: str) -> Path | None:
  for suffix in ('', '.gz'):
    p = directory / f'{prefix}-{kind}{suffix}'
    if p.exists():
      return p
  return None


def load_idx_dir(directory: str | os.PathLike) -> dict:
  """Reads `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` from `directory`.

  Returns:
    The splits `train` and `test`, each a set or None, at least one present.
  """
  d = Path(directory)
  require(d.is_dir(), f"IDX directory '{d}' does not exist: set data_dir to a folder of IDX files")
  out: dict[str, dict | None] = {}
  for split, prefix in (('train', 'train'), ('test', 't10k')):
    images_path = _find(d, prefix, 'images-idx3-ubyte')
    if images_path is None:
      out[split] = None
      continue
    labels_path = _find(d, prefix, 'labels-idx1-ubyte')
    try:
      images = read_idx(images_path)
      labels = read_idx(labels_path) if labels_path else np.full(len(images), -1)
    except ValueError as e:
      raise UserError(f'{e}; replace the file with a good copy') from None
    require(images.ndim in (3, 4), f'{images_path}: expected [N, H, W] images, got shape {images.shape}')
    require(len(labels) == len(images),
            f'{labels_path}: {len(labels)} labels for {len(images)} images; use the matching label file')
    out[split] = {'image': to_images(images), 'label': labels.astype(np.int32)}
  require(any(out.values()),
          f"no IDX images in '{d}': expected train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz]")
  return out


def load_digits() -> dict:
  """scikit-learn's 8x8 digits (0..16) as one set `[1797, 8, 8, 1]` in [0, 1], from its CSV (no 2 s import)."""
  spec = importlib.util.find_spec('sklearn')
  csv = Path(spec.origin).parent / 'datasets' / 'data' / 'digits.csv.gz' if spec and spec.origin else None
  if csv is not None and csv.is_file():
    data = np.loadtxt(csv, delimiter=',')  # as sklearn.datasets.load_digits reads it
    pixels, labels = data[:, :-1], data[:, -1]
  else:
    from sklearn.datasets import load_digits as sk_digits
    pixels, labels = sk_digits(return_X_y=True)
  return {'train': {'image': (pixels.reshape(-1, 8, 8, 1) / 16.0).astype(np.float32),
                    'label': labels.astype(np.int32)}, 'test': None}


def as_set(images, labels=None, name: str = 'images') -> dict:
  """`{'image': [N, H, W, C], 'label': int32 [N]}` from NumPy or JAX `images` ([N, H, W] or [N, H, W, C];
  uint8 pixels kept as uint8, others as float32) and optional integer `labels` (else -1).

  Raises:
    UserError: not image-shaped, empty, or labels that do not match.
  """
  images = np.asarray(images)
  require(images.ndim in (3, 4) and len(images) > 0,
          f'{name}: expected images [N, H, W] or [N, H, W, C], got shape {images.shape}')
  require(np.issubdtype(images.dtype, np.number), f'{name}: expected numbers, got dtype {images.dtype}')
  if labels is None:
    labels = np.full(len(images), -1)
  labels = np.asarray(labels)
  require(labels.shape == (len(images),) and np.issubdtype(labels.dtype, np.integer),
          f'{name}: expected {len(images)} integer labels, got {labels.dtype} of shape {labels.shape}')
  return {'image': to_images(images), 'label': labels.astype(np.int32)}


def from_arrays(train_images, train_labels=None, test_images=None, test_labels=None) -> dict:
  """Your own arrays as a dataset for `train_and_evaluate(..., data=...)` and `jaxae.load(..., data=...)`.

  Without a test set, the run holds out `holdout` of the training images (as for
  a dataset with one split). The loop then checks them as any dataset: NaN/Inf,
  the [0, 1] range a Bernoulli likelihood needs, the shape the architecture needs.

  Returns:
    The splits `train` (a set) and `test` (a set or None), as `load` returns them.
  """
  test = None if test_images is None else as_set(test_images, test_labels, 'test images')
  return {'train': as_set(train_images, train_labels, 'train images'), 'test': test}


def from_source(source, name: str = 'source') -> dict:
  """One set from a random-access source (`len(source)` and `source[i] -> {'image': ..., 'label': ...}`,
  as `tfds.data_source` gives), read into memory."""
  try:
    chunks = list(records.source_chunks(source))
    images = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros((0,))
    labels = np.concatenate([c[1] for c in chunks]) if chunks else None
  except (TypeError, KeyError, ValueError) as e:
    raise UserError(f'{name}: expected len() and items with an "image" of one shape ({type(e).__name__}: {e})'
                    ) from None
  return as_set(images, labels, name)


@contextlib.contextmanager
def _quiet_absl():
  """TFDS's absl warnings (a folder without dataset_info.json...) silenced: the one line of a `UserError` says
  what is wrong."""
  logger = logging.getLogger('absl')
  level, logger.level = logger.level, logging.ERROR
  try:
    yield
  finally:
    logger.setLevel(level)


def _tfds_split(name: str, split: str, data_dir: str | None) -> dict:
  import tensorflow_datasets as tfds

  try:
    with _quiet_absl():
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises many types for "not prepared"
    where = data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
    raise UserError(
        f"TFDS dataset '{name}' split '{split}' is not prepared in {where} ({type(e).__name__}); "
        f"prepare it once on a machine with network and TensorFlow: "
        f"tfds.builder('{name}').download_and_prepare(file_format='array_record'), "
        'then set data_dir or TFDS_DATA_DIR to that folder'
    ) from None
  return from_source(source, f'{name} {split}')


def load_tfds(name: str, data_dir: str | None = None) -> dict:
  """Train and test splits of a prepared TFDS image dataset."""
  import tensorflow_datasets as tfds

  try:
    with _quiet_absl():
      builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(
        f"unknown dataset '{name}': use digits, idx or records (with data_dir), or a TFDS image dataset "
        f"such as {', '.join(KNOWN_TFDS)}"
    ) from None
  splits = set(builder.info.splits.keys()) if builder.info.splits else {'train', 'test'}
  return {s: _tfds_split(name, s, data_dir) if s in splits else None for s in ('train', 'test')}


def load(name: str, data_dir: str | None = None) -> dict:
  """`{'train': set or None, 'test': set or None}` for dataset `name`."""
  require(name != 'arrays', "dataset=arrays is a run on your own arrays: pass them again, "
          "data=jaxae.data.from_arrays(...), to train_and_evaluate or jaxae.load")
  if name == 'digits':
    return load_digits()
  if name in ('records', 'idx'):
    if data_dir is None:
      raise UserError('dataset=records needs data_dir: the records folder (scripts/make_records.py)' if name ==
                      'records' else 'dataset=idx needs data_dir: the folder holding the IDX files')
    return records.load(data_dir) if name == 'records' else load_idx_dir(data_dir)
  return load_tfds(name, data_dir)
