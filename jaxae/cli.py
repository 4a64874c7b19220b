"""Command line: `jaxae-train` / `python scripts/train.py`.

Bad input exits with status 2 and one line on stderr naming the problem and
the fix; nothing already in the workdir is removed.
"""

import argparse
import os
import sys

from jaxae import models
from jaxae.data import KNOWN_TFDS
from jaxae.errors import UserError

FLAGS = {  # flag -> config key
    'dataset': 'dataset', 'data_dir': 'data_dir', 'epochs': 'epochs', 'batch_size': 'batch_size',
    'latent_dim': 'latent_dim', 'learning_rate': 'learning_rate', 'seed': 'seed',
}


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='jaxae-train',
      description='Train an autoencoder-family model; re-running on the same workdir resumes.',
      epilog=(f"models: {', '.join(models.names())}\n"
              f"datasets: digits (embedded, offline), idx (IDX files in --data-dir), or a prepared TFDS "
              f"dataset: {', '.join(KNOWN_TFDS)}, ...\n"
              'config keys for --set: see jaxae/config.py and each model\'s defaults()'),
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument('--model', default='vae', help='model family (default: vae)')
  p.add_argument('--workdir', required=True, help='output folder (config, metrics, checkpoints, figures)')
  p.add_argument('--dataset', help='dataset (default: digits)')
  p.add_argument('--data-dir', help='IDX folder, or TFDS data dir (default: $TFDS_DATA_DIR)')
  p.add_argument('--epochs', type=int)
  p.add_argument('--batch-size', type=int)
  p.add_argument('--latent-dim', type=int)
  p.add_argument('--learning-rate', type=float)
  p.add_argument('--seed', type=int)
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='any other config value, e.g. --set beta=0.5 --set arch=conv (repeatable)')
  p.add_argument('--no-progress', action='store_true', help='no progress bar')
  group = p.add_argument_group('several hosts (one process per host, the same command on each)')
  group.add_argument('--distributed', action='store_true',
                     help='join a multi-process run; the cluster (SLURM, Open MPI, Cloud TPU...) is detected')
  group.add_argument('--coordinator', metavar='HOST:PORT',
                     help='process 0\'s address (with the next two; implies --distributed)')
  group.add_argument('--num-processes', type=int, help='how many processes in all (with --coordinator)')
  group.add_argument('--process-id', type=int, help='this process\'s rank, 0 to N-1 (with --coordinator)')
  return p


def overrides_from(args) -> dict:
  from jaxae import config as config_lib

  out = config_lib.parse_overrides(args.set, args.model)
  out['model'] = args.model
  out.update({key: getattr(args, flag) for flag, key in FLAGS.items() if getattr(args, flag) is not None})
  return out


def main(argv=None) -> int:
  args = parser().parse_args(argv)
  try:
    from jaxae import parallel
    from jaxae.train import train_and_evaluate

    if args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
      parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    result = train_and_evaluate(overrides_from(args), args.workdir, progress=not args.no_progress)
  except UserError as e:
    print(f'jaxae-train: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('jaxae-train: interrupted; re-run the same command to resume', file=sys.stderr)
    return 130
  if not parallel.is_primary():
    return 0
  final = {r['split']: r for r in result.records if r['epoch'] == result.config['epochs']}
  if 'eval' in final:
    shown = ', '.join(f'{k}={v:.4f}' for k, v in final['eval'].items() if k not in ('epoch', 'split', 'step'))
    print(f"epoch {final['eval']['epoch']} eval: {shown}")
  print(f'outputs in {os.path.abspath(args.workdir)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
