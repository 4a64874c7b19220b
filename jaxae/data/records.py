"""Image datasets on disk as ArrayRecord files, read on demand: training on data larger than memory.

A records folder (`dataset=records`, `data_dir=<folder>`) holds, per split:

- `{split}.array_record`: one record per example, its `H*W*C` uint8 pixels
  (`group_size:1`, uncompressed: any example is one read, no decoding);
- `{split}-labels.npy`: int32 `[N]` labels (-1 when unlabelled);

and `meta.json`: `{"format": "jaxae-records-1", "shape": [H, W, C], "splits": {"train": N, ...}}`.

`write` builds one from chunks of arrays, so writing never holds the dataset;
`convert` turns any dataset jaxae loads (IDX, a prepared TFDS dataset read with
`tfds.data_source`, your arrays) into one, decoding every image once instead of
every epoch. `load` returns lazy `Images`: a uint8 `[N, H, W, C]` array-like
whose batches are read with ArrayRecord's reader, in grain's threads, when the
loop asks for them, so host memory holds a few batches, never the dataset.
"""

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxae import errors
from jaxae.errors import UserError, require

FORMAT = 'jaxae-records-1'
OPTIONS = 'group_size:1,uncompressed'
READ_OPTIONS = 'readahead_buffer_size:0,max_parallelism:1'


def _meta_path(folder: Path) -> Path:
  return folder / 'meta.json'


def read_meta(folder: str | os.PathLike) -> dict:
  """`meta.json` of a records folder, checked. Raises `UserError` naming the problem and the fix."""
  folder = Path(folder)
  path = _meta_path(folder)
  require(path.is_file(), f"'{folder}' is not a records folder (no meta.json): make one with "
          'scripts/make_records.py or jaxae.records.write')
  try:
    meta = json.loads(path.read_text())
    shape = tuple(int(d) for d in meta['shape'])
    splits = {str(k): int(v) for k, v in meta['splits'].items()}
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is corrupt ({type(e).__name__}); rebuild the records folder') from None
  require(meta.get('format') == FORMAT and len(shape) == 3,
          f"{path} is not a {FORMAT} folder (format {meta.get('format')!r}); rebuild it with this jaxae")
  return {'shape': shape, 'splits': splits}


def write(folder: str | os.PathLike, split: str, chunks: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> int:
  """Writes split `split` of a records folder from `(images uint8 [b, H, W, C], labels [b] or None)` chunks.

  Memory holds one chunk at a time. Other splits already in the folder are kept.
  Returns the number of examples written.
  """
  from array_record.python.array_record_module import ArrayRecordWriter

  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  meta = read_meta(folder) if _meta_path(folder).exists() else {'shape': None, 'splits': {}}
  shape, labels, n = meta['shape'] and tuple(meta['shape']), [], 0
  tmp = folder / f'{split}.array_record.tmp'
  writer = ArrayRecordWriter(str(tmp), OPTIONS)
  try:
    for images, chunk_labels in chunks:
      images = np.asarray(images)
      require(images.dtype == np.uint8 and images.ndim == 4, f'records hold uint8 images [b, H, W, C], got '
              f'{images.dtype} {images.shape}; convert pixels to uint8 first')
      require(shape is None or images.shape[1:] == shape,
              f'images of shape {images.shape[1:]} in a records folder of shape {shape}; use one shape')
      shape = images.shape[1:]
      for image in images:
        writer.write(image.tobytes())
      labels.append(np.full(len(images), -1, np.int32) if chunk_labels is None
                    else np.asarray(chunk_labels, np.int32))
      n += len(images)
    require(n > 0, f'no images for split {split!r}; give at least one chunk')
    writer.close()
  except BaseException as e:
    with contextlib.suppress(Exception):  # closed already, or failing as the write did
      writer.close()
    tmp.unlink(missing_ok=True)  # nothing half-written is left; the folder is as it was
    cause = errors.os_error(e) if isinstance(e, RuntimeError) else None  # ArrayRecord's C++ says it in words
    if cause is not None:
      raise OSError(cause.errno, cause.strerror, str(tmp)) from None
    raise
  os.replace(tmp, folder / f'{split}.array_record')
  np.save(folder / f'{split}-labels.npy', np.concatenate(labels))
  meta = {'format': FORMAT, 'shape': list(shape), 'splits': {**meta['splits'], split: n}}
  tmp = _meta_path(folder).with_suffix('.tmp')
  tmp.write_text(json.dumps(meta))
  os.replace(tmp, _meta_path(folder))  # meta.json last: a half-written split is never listed
  return n


def chunks_of(images, labels=None, size: int = 4096):
  """`(images[i:i + size], labels[i:i + size])` chunks of arrays (or of a random-access source's arrays)."""
  for i in range(0, len(images), size):
    yield np.asarray(images[i:i + size]), None if labels is None else np.asarray(labels[i:i + size])


def source_chunks(source, size: int = 4096):
  """Chunks of a random-access source (`len(source)`, `source[i] -> {'image': [H, W(, C)], 'label': ...}`, as
  `tfds.data_source` gives), read `size` examples at a time: converting a TFDS dataset holds one chunk."""
  for start in range(0, len(source), size):
    examples = [source[i] for i in range(start, min(start + size, len(source)))]
    images = np.stack([np.asarray(ex['image']) for ex in examples])
    yield (images[..., None] if images.ndim == 3 else images), np.array([ex.get('label', -1) for ex in examples])


def synthetic_chunks(n: int, shape: Sequence[int], seed: int = 0, size: int = 4096):
  """`n` generated uint8 images of `shape` (blurred noise, label = a blob's quadrant), a chunk at a time: a
  dataset of any size, for tests and benchmarks of data larger than memory."""
  for start in range(0, n, size):
    rng = np.random.default_rng([seed, start])
    b = min(size, n - start)
    x = rng.random((b, *shape), np.float32)
    labels = rng.integers(0, 4, b)
    h, w = shape[0] // 2, shape[1] // 2
    for q in range(4):
      rows = labels == q
      x[rows, (q // 2) * h:(q // 2 + 1) * h, (q % 2) * w:(q % 2 + 1) * w] += 1.0
    yield (x * 127.5).astype(np.uint8), labels


class Images:
  """A lazy, read-only uint8 image array `[N, H, W, C]` over a records split (or a subset of it).

  `x[i]` for an int, a slice or an integer array reads those examples (in
  that order) and returns a NumPy array; `subset(index)` is a view, read
  nothing; `np.asarray(x)` reads everything.
  """

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, path: str | os.PathLike, shape: Sequence[int], count: int, index: np.ndarray | None = None):
    self.path, self.image_shape, self.count = str(path), tuple(shape), count
    self.index = index
    self._readers = None

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self), *self.image_shape)

  @property
  def nbytes(self) -> int:
    return int(np.prod(self.shape))

  @property
  def size(self) -> int:
    return self.nbytes

  def __len__(self) -> int:
    return self.count if self.index is None else len(self.index)

  def __getstate__(self):  # picklable (grain workers): readers are reopened where they are used
    return {**self.__dict__, '_readers': None}

  def reader(self):
    """This thread's ArrayRecord reader of the split (random access: no read-ahead; grain's threads give the
    parallelism)."""
    if self._readers is None:
      self._readers = threading.local()
    if not hasattr(self._readers, 'reader'):
      from array_record.python.array_record_module import ArrayRecordReader

      self._readers.reader = ArrayRecordReader(self.path, READ_OPTIONS)
    return self._readers.reader

  def subset(self, index) -> 'Images':
    """The examples `index` (integers, a boolean mask or a slice) as a view."""
    index = np.arange(len(self))[index]
    return Images(self.path, self.image_shape, self.count, index if self.index is None else self.index[index])

  def __getitem__(self, i) -> np.ndarray:
    keys = np.arange(len(self))[i]
    scalar = np.ndim(keys) == 0
    keys = np.atleast_1d(keys)
    out = self._read(keys if self.index is None else self.index[keys])
    return out[0] if scalar else out

  def _read(self, keys: np.ndarray) -> np.ndarray:
    """Records `keys` of the file as `[len(keys), H, W, C]` uint8."""
    try:
      records = self.reader().read(keys.tolist()) if len(keys) else []
      return np.frombuffer(b''.join(records), np.uint8).reshape(len(keys), *self.image_shape)
    except (RuntimeError, ValueError) as e:  # Riegeli's checksum or framing errors; a record of the wrong size
      why = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
      raise UserError(f'{self.path} is damaged ({why}); rebuild the records folder (scripts/make_records.py)'
                      ) from None

  def check(self) -> None:
    """`UserError` if the file's index does not open, holds another number of records than its meta says, or
    its first or last record does not read: what can be seen without reading the whole file."""
    try:
      count = self.reader().num_records()
    except RuntimeError:
      count = None
    require(count == self.count, f'{self.path} is damaged (its index lists {count} records, meta.json {self.count});'
            ' rebuild the records folder (scripts/make_records.py)')
    self._read(np.array([0, self.count - 1]))

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)


def load(folder: str | os.PathLike) -> dict:
  """`{'train': set or None, 'test': set or None}` of lazy `Images` and in-memory labels."""
  folder = Path(folder)
  meta = read_meta(folder)
  out: dict[str, dict | None] = {}
  for split in ('train', 'test'):
    n = meta['splits'].get(split)
    path, labels_path = folder / f'{split}.array_record', folder / f'{split}-labels.npy'
    if n is None:
      out[split] = None
      continue
    require(path.is_file() and labels_path.is_file(),
            f'{folder}: split {split!r} is listed but {path.name} or {labels_path.name} is missing; rebuild it')
    try:
      labels = np.load(labels_path)
    except (ValueError, OSError) as e:
      raise UserError(f'{labels_path} is corrupt ({type(e).__name__}); rebuild the records folder') from None
    require(labels.shape == (n,), f'{labels_path}: {labels.shape[0] if labels.ndim else 0} labels for {n} images; '
            'rebuild the records folder')
    images = Images(path, meta['shape'], n)
    images.check()
    out[split] = {'image': images, 'label': labels.astype(np.int32)}
  require(any(out.values()), f'{folder} lists no train or test split; write one with jaxae.records.write')
  return out


def convert(sets: dict, folder: str | os.PathLike, chunk: int = 4096) -> dict:
  """Writes `{'train': set, 'test': set}` (as `jaxae.data.load` returns; images uint8) to a records folder.

  Returns `{split: examples written}`.
  """
  written = {}
  for split, d in sets.items():
    if d is not None:
      written[split] = write(folder, split, chunks_of(d['image'], d.get('label'), chunk))
  return written
