"""Writes a records folder (`jaxae.records`): a dataset on disk that training streams, larger than memory if need be.

  python scripts/make_records.py --dataset idx --data-dir ../shared/data/mnist --out data/mnist-records
  python scripts/make_records.py --dataset mnist --out data/mnist-records   # a prepared TFDS dataset
  python scripts/make_records.py --synthetic 200000 --shape 32,32,3 --out data/synthetic
  python scripts/train.py --model vae --dataset records --data-dir data/mnist-records --workdir runs/vae

TFDS datasets are read with `tfds.data_source` a chunk at a time and decoded
once here, not every epoch; IDX files and digits are read whole first. Records
hold uint8 pixels meaning v/255: digits' k/16 values are stored as the nearest
(at most 1/510 away). An --out that holds files is replaced only with
--overwrite, and only if it is a records folder. Exit 0, or 2 with one line on
bad input.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from jaxae import data, errors
from jaxae.data import records
from jaxae.errors import ArgumentParser, UserError, require


def tfds_chunks(name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds

  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception:  # not prepared, or no such split: data.load says which, in one line
    data.load_tfds(name, data_dir)
    return None
  return records.source_chunks(source)


def pixels(x: np.ndarray) -> np.ndarray:
  """Float images in [0, 1] as the nearest uint8 pixels v/255 (digits' k/16 moves by at most 1/510)."""
  return np.round(x * 255).astype(np.uint8)


def check_out(out: Path, overwrite: bool) -> None:
  """`UserError` if `out` exists and is not empty, unless `overwrite` (a records folder is then replaced)."""
  require(not out.is_file(), f'--out {out} is a file; give a folder')
  if out.is_dir() and any(out.iterdir()):
    require(overwrite, f'--out {out} already holds files; give --overwrite to replace them, or another --out')
    require((out / 'meta.json').is_file(), f'--out {out} is not a records folder (no meta.json): --overwrite '
            'replaces only records folders; give another --out')


def replace(out: Path, new: Path) -> None:
  """Moves the records files of `new` into `out`, each replacing its namesake in one rename (meta.json last), then
  removes `out`'s records files that `new` has not; nothing else in `out` is touched. A kill meanwhile leaves a
  records folder that --overwrite replaces again."""
  out.mkdir(parents=True, exist_ok=True)
  earlier = {f.name for f in [*out.glob('*.array_record'), *out.glob('*-labels.npy')]}
  names = sorted(f.name for f in new.iterdir() if f.name != 'meta.json')
  for name in [*names, 'meta.json']:
    os.replace(new / name, out / name)
  for name in earlier - set(names):
    (out / name).unlink()


def write(args) -> dict:
  if args.synthetic:
    shape = tuple(int(v) for v in args.shape.split(','))
    require(len(shape) == 3 and min(shape) > 0, f'--shape {args.shape}: give H,W,C, e.g. 32,32,3')
    return {'train': records.write(args.out, 'train', records.synthetic_chunks(args.synthetic, shape, args.seed)),
            'test': records.write(args.out, 'test', records.synthetic_chunks(args.synthetic // 10, shape,
                                                                              args.seed + 1))}
  require(args.dataset is not None, 'give --dataset (idx, digits or a TFDS name) or --synthetic N')
  if args.dataset == 'digits':  # pixels k/16 in [0, 1]: records hold uint8 meaning v/255, the nearest is kept
    sets = data.load('digits')
    return records.convert({k: None if v is None else {**v, 'image': pixels(v['image'])} for k, v in sets.items()},
                           args.out)
  if args.dataset in ('idx', 'records'):
    return records.convert(data.load(args.dataset, args.data_dir), args.out)
  written = {}
  for split in ('train', 'test'):
    chunks = tfds_chunks(args.dataset, split, args.data_dir)
    if chunks is not None:
      written[split] = records.write(args.out, split, chunks)
  return written


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--dataset', help='idx, digits, or a prepared TFDS image dataset (mnist, cifar10, ...)')
  p.add_argument('--data-dir', help='IDX folder, or TFDS data dir')
  p.add_argument('--synthetic', type=int, default=0, help='instead: N generated images (and N/10 to test)')
  p.add_argument('--shape', default='32,32,3', help='H,W,C of --synthetic images')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--out', required=True, help='the records folder to write')
  p.add_argument('--overwrite', action='store_true', help='replace the records folder --out if it exists')
  args = p.parse_args(argv)
  out = Path(args.out)
  try:
    check_out(out, args.overwrite)
    with tempfile.TemporaryDirectory(prefix=f'.{out.name}-', dir=out.parent if out.parent.is_dir() else None) as tmp:
      written = write(argparse.Namespace(**{**vars(args), 'out': tmp}))  # a failed write leaves --out as it was
      replace(out, Path(tmp))
  except OSError as e:  # the temporary folder is gone with what was written in it
    errors.report('make_records', str(errors.filesystem_error(e, out, f"nothing in {out} was changed")))
    return 2
  except UserError as e:
    errors.report('make_records', str(e))
    return 2
  print(', '.join(f'{split}: {n} examples' for split, n in written.items()) + f' in {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
