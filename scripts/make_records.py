"""Writes a records folder (`jaxae.records`): a dataset on disk that training streams, larger than memory if need be.

  python scripts/make_records.py --dataset idx --data-dir ../shared/data/mnist --out data/mnist-records
  python scripts/make_records.py --dataset mnist --out data/mnist-records   # a prepared TFDS dataset
  python scripts/make_records.py --synthetic 200000 --shape 32,32,3 --out data/synthetic
  python scripts/train.py --model vae --dataset records --data-dir data/mnist-records --workdir runs/vae

TFDS datasets are read with `tfds.data_source` a chunk at a time and decoded
once here, not every epoch; IDX files and digits are read whole first. Exit 0,
or 2 with one line on bad input.
"""

import argparse
import sys

from jaxae import data
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


def write(args) -> dict:
  if args.synthetic:
    shape = tuple(int(v) for v in args.shape.split(','))
    require(len(shape) == 3 and min(shape) > 0, f'--shape {args.shape}: give H,W,C, e.g. 32,32,3')
    return {'train': records.write(args.out, 'train', records.synthetic_chunks(args.synthetic, shape, args.seed)),
            'test': records.write(args.out, 'test', records.synthetic_chunks(args.synthetic // 10, shape,
                                                                              args.seed + 1))}
  require(args.dataset is not None, 'give --dataset (idx, digits or a TFDS name) or --synthetic N')
  if args.dataset in ('idx', 'digits', 'records'):
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
  args = p.parse_args(argv)
  try:
    written = write(args)
  except UserError as e:
    print(f'make_records: error: {e}', file=sys.stderr)
    return 2
  print(', '.join(f'{split}: {n} examples' for split, n in written.items()) + f' in {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
