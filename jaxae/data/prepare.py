"""From loaded sets to a run's data: pixels, splits, class filters, binarization, checks, batch order.

Images are uint8 pixels (meaning x / 255) when the source stores them so, else
float32 in [0, 1]; `to_float` converts, on the host or inside a compiled step,
with the same bits. The training loop keeps uint8 images as uint8 on the host
and the device (4x less memory than float32) and converts each batch in the
compiled step; `prepare(config)` gives float32.

Binarization: 'threshold' (x > 0.5), 'sample' (one fixed Bernoulli draw) and
'dynamic' (a fresh draw every time an example is seen, done in the loop).
`train_classes` keeps only those labels in the training set (the evaluation set
keeps all of them: anomaly detection trains on one class and scores the rest).
`labels_per_class` = N > 0 keeps the labels of the first N training images of each class and marks the
others unlabelled (-1), for semi-supervised training; the held-out labels are all kept.
"""

import hashlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.data import records
from jaxae.data.sources import load
from jaxae.errors import require


class Splits(NamedTuple):
  """Training and evaluation sets; the evaluation set is a test split or a held-out part."""

  train: dict
  eval: dict


PIXEL_SCALE = np.float32(1 / 255)  # XLA compiles x / 255 to x * (1/255): multiplying gives the same bits anywhere


def to_float(x):
  """Images as float32 in [0, 1]: uint8 pixels times float32(1/255) (255 -> 1.0 exactly), float32 as is.

  NumPy or JAX (also inside jit): the same bits either way, so a batch converted on the device equals the
  host's conversion. Lazy images (`jaxae.records.Images`) are read whole.
  """
  if is_lazy(x):
    x = np.asarray(x)
  if x.dtype == np.uint8:
    return x.astype(np.float32) * PIXEL_SCALE
  return x


def is_lazy(images) -> bool:
  """Whether `images` are read from disk on demand (`jaxae.records.Images`) rather than held in memory."""
  return isinstance(images, records.Images)


def take(data: dict, index: np.ndarray) -> dict:
  """The examples `index` of every array of `data` (a view, not a read, for lazy images)."""
  return {k: v.subset(index) if is_lazy(v) else v[index] for k, v in data.items()}


def holdout_split(data: dict, holdout: float, order: str, seed: int) -> Splits:
  """Splits one set into train and eval: `holdout` a fraction (< 1) or a count.

  `order='tail'` holds out the last examples (e.g. MNIST t10k: first 9,000 to
  train, last 1,000 to evaluate); 'seeded' a random subset drawn with `seed`.
  """
  n = len(data['image'])
  n_eval = int(round(holdout * n)) if holdout < 1 else int(holdout)
  require(0 < n_eval < n, f'holdout={holdout} leaves no train or eval examples out of {n}; change holdout')
  index = np.arange(n) if order == 'tail' else np.random.default_rng(seed).permutation(n)
  return Splits(take(data, index[: n - n_eval]), take(data, index[n - n_eval:]))


def keep_classes(data: dict, classes, dataset: str) -> dict:
  """The examples of `data` whose label is in `classes` (all when empty), e.g. one normal class for anomaly
  detection. Raises `UserError` for a class the set does not have."""
  if not classes:
    return data
  present = np.unique(data['label'])
  missing = sorted(set(classes) - set(present.tolist()))
  require(not missing, f"train_classes names class(es) {', '.join(map(str, missing))}, which the {dataset} "
          f"training set does not have; choose from {', '.join(map(str, present))}")
  return take(data, np.isin(data['label'], classes))


def keep_labels(data: dict, per_class: int) -> dict:
  """`data` with the labels of the first `per_class` images of each class kept and the others set to -1
  (unlabelled); all of them when `per_class` is 0. Raises `UserError` for a class with fewer images."""
  if not per_class:
    return data
  labels = np.asarray(data['label'])
  require(per_class > 0 and bool((labels >= 0).all()), f'labels_per_class={per_class} needs a positive count and a '
          'fully labelled training set')
  kept = np.full_like(labels, -1)
  for c in np.unique(labels):
    index = np.flatnonzero(labels == c)
    require(len(index) >= per_class, f'labels_per_class={per_class}, but class {c} has {len(index)} training '
            f'images: give at most {len(index)}')
    kept[index[:per_class]] = c
  return {**data, 'label': kept}


def labelled_partners(data: dict, seed: int) -> dict:
  """A labelled partner for every training image, so that each batch carries a labelled mini-batch of its own
  size however few labels there are (`labels_per_class`): `{'labelled_image': [N, ...], 'labelled_label': [N]}`,
  row i the labelled image `pool[i % L]` of a seeded shuffle of the L labelled ones (the epoch's shuffle draws
  which partners meet in a batch); `{}` when every image or none is labelled."""
  labels = np.asarray(data['label'])
  pool = np.flatnonzero(labels >= 0)
  if len(pool) in (0, len(labels)):
    return {}
  pool = np.random.default_rng(seed).permutation(pool)
  cycle = np.arange(len(labels)) % len(pool)
  images = np.asarray(data['image'][pool])  # the L labelled images, read once (lazy records too)
  return {'labelled_image': images[cycle], 'labelled_label': labels[pool][cycle].astype(np.int32)}


def binarize(images: np.ndarray, mode: str, seed: int) -> np.ndarray:
  """Static binarization of images (uint8 or float): 'threshold' (> 0.5) or 'sample'/'dynamic' (one Bernoulli
  draw with `seed`); float32 {0, 1}. 'none' returns `images` as they are.

  ('dynamic' redraws training images in the loop; evaluation sets use one fixed draw.)
  """
  if mode == 'none':
    return images
  images = to_float(images)
  if mode == 'threshold':
    return (images > 0.5).astype(np.float32)
  return (np.random.default_rng(seed).random(images.shape) < images).astype(np.float32)


def check_images(data: dict, likelihood: str, name: str) -> None:
  """Raises `UserError` for empty, non-finite, or (Bernoulli) out-of-[0, 1] images (uint8 pixels always pass)."""
  x = data['image']
  require(x.ndim == 4 and len(x) > 0, f'{name}: expected images [N, H, W, C], got shape {x.shape}')
  if x.dtype == np.uint8:
    return
  require(np.isfinite(x).all(), f'{name}: the data contain NaN or Inf; clean or replace the dataset')
  if likelihood in ('bernoulli', 'continuous_bernoulli'):
    lo, hi = float(x.min()), float(x.max())
    require(lo >= 0 and hi <= 1, f'{name}: data range [{lo:g}, {hi:g}] is outside [0, 1], which a '
            'Bernoulli likelihood needs; rescale the data or set likelihood=gaussian')


def prepare(config, sets: dict | None = None, compact: bool = False) -> Splits:
  """Loads (or takes `sets`, e.g. `from_arrays(...)`), splits, binarizes and checks the data a config asks for.

  Images come out float32 in [0, 1]; with `compact`, uint8 images that need no static binarization stay uint8
  (the training loop converts each batch on the device: `to_float`).
  """
  sets = load(config['dataset'], config['data_dir']) if sets is None else sets
  if sets['train'] is not None and sets['test'] is not None:
    splits = Splits(sets['train'], sets['test'])
  else:
    pool = sets['train'] if sets['train'] is not None else sets['test']
    splits = holdout_split(pool, config['holdout'], config['holdout_order'], config['seed'])
  train = keep_classes(splits.train, config.get('train_classes', ()), config['dataset'])
  splits = Splits(keep_labels(train, config.get('labels_per_class', 0)), splits.eval)
  mode = config['binarize']
  require(not (is_lazy(splits.train['image']) and mode in ('threshold', 'sample')),
          f'binarize={mode} would read the whole {config["dataset"]} dataset into memory; use binarize=dynamic '
          '(a fresh draw per batch) or none')
  train = {**splits.train, 'image': binarize(splits.train['image'], 'none' if mode == 'dynamic' else mode,
                                             config['seed'])}
  test = {**splits.eval, 'image': binarize(splits.eval['image'], mode, config['seed'] + 1)}
  if not compact:
    train, test = ({**d, 'image': to_float(d['image'])} for d in (train, test))
  for name, d in (('train', train), ('eval', test)):
    check_images(d, config.get('likelihood', 'bernoulli'), f"{config['dataset']} {name} set")
  return Splits(train, test)


def batch_indices(key: jax.Array | None, n: int, batch_size: int):
  """A (shuffled if key) order of `n` examples padded to whole batches.

  Returns:
    `(index [n_batches, batch_size] int32, mask [n_batches, batch_size] float32)`;
    padding repeats earlier examples with mask 0.
  """
  n_batches = -(-n // batch_size)
  order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
  flat = jnp.arange(n_batches * batch_size)
  index = order[flat % n].reshape(n_batches, batch_size)
  mask = (flat < n).astype(jnp.float32).reshape(n_batches, batch_size)
  return index, mask


def fingerprint(splits: Splits, rows: int = 64) -> dict:
  """What identifies a run's data, cheap at any size: per split, the count, the image shape, and a hash of `rows`
  evenly spaced images (as float32 in [0, 1], so uint8 and float copies of the same data agree) and all labels.

  Returns:
    Per split (`train`, `eval`), its `count`, `shape` and `sha256`: a dict of dicts, JSON-ready.
  """
  out = {}
  for name, d in (('train', splits.train), ('eval', splits.eval)):
    n = len(d['image'])
    index = np.unique(np.linspace(0, n - 1, min(rows, n)).astype(np.int64))
    sample = np.stack([np.asarray(d['image'][int(i)]) for i in index])  # row by row: cheap on lazy records too
    digest = hashlib.sha256(np.ascontiguousarray(to_float(sample)).tobytes())
    digest.update(np.ascontiguousarray(d['label'], np.int32).tobytes())
    out[name] = {'count': n, 'shape': list(d['image'].shape[1:]), 'sha256': digest.hexdigest()[:16]}
  return out


def changes(saved: dict, now: dict) -> str:
  """What differs between two fingerprints (`fingerprint`), in words ('' if nothing)."""
  said = []
  for split in ('train', 'eval'):
    a, b = saved.get(split, {}), now.get(split, {})
    for key, what in (('count', 'images'), ('shape', 'image shape')):
      if a.get(key) != b.get(key):
        said.append(f'{split} {what} {a.get(key)} then, {b.get(key)} now')
    if not said and a.get('sha256') != b.get('sha256'):
      said.append(f'{split} images or labels differ')
  return '; '.join(said)
