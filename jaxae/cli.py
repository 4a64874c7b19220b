"""Command line: `jaxae-train` / `python scripts/train.py`.

Bad input exits with status 2 and one line on stderr naming the problem and
the fix; nothing already in the workdir is removed.
"""

import argparse
import contextlib
import os
import signal
import sys

from jaxae import errors, models
from jaxae.data import KNOWN_TFDS
from jaxae.errors import ArgumentParser, UserError

FLAGS = {  # flag -> config key
    'dataset': 'dataset', 'data_dir': 'data_dir', 'epochs': 'epochs', 'batch_size': 'batch_size',
    'latent_dim': 'latent_dim', 'learning_rate': 'learning_rate', 'seed': 'seed',
}


def parser() -> argparse.ArgumentParser:
  p = ArgumentParser(
      prog='jaxae-train',
      description='Train an autoencoder-family model; re-running on the same workdir resumes.',
      epilog=(f"models: {', '.join(models.names())}\n"
              f"datasets: digits (embedded, offline), idx (IDX files in --data-dir), or a prepared TFDS "
              f"dataset: {', '.join(KNOWN_TFDS)}, ...\n"
              'every config key, its default and meaning: jaxae-train --list-config MODEL'),
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  from jaxae.config import BASE

  latent = ', '.join(f"{m} {models.get(m).defaults()['latent_dim']}" for m in models.names())
  p.add_argument('--model', default='vae', help='model family (default: vae)')
  p.add_argument('--workdir', help='output folder (config, metrics, checkpoints, figures); required to train')
  p.add_argument('--list-config', metavar='MODEL', help='print every config key of MODEL with its default and '
                 'meaning, and exit')
  p.add_argument('--dataset', help=f"dataset (default: {BASE['dataset']})")
  p.add_argument('--data-dir', help='IDX or records folder, or TFDS data dir (default: $TFDS_DATA_DIR)')
  p.add_argument('--epochs', type=int, help=f"passes over the training set (default: {BASE['epochs']})")
  p.add_argument('--batch-size', type=int, help=f"examples per step (default: {BASE['batch_size']})")
  p.add_argument('--latent-dim', type=int, help=f"code size (default: the model's: {latent})")
  rates = ', '.join(f'{m} {r:g}' for m in models.names() if (r := models.get(m).defaults().get('learning_rate')))
  p.add_argument('--learning-rate', type=float,
                 help=f"Adam step size (default: {BASE['learning_rate']:g}; {rates})")
  p.add_argument('--seed', type=int, help=f"seed of every random draw (default: {BASE['seed']})")
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='any other config value, e.g. --set beta=0.5 --set arch=conv (repeatable; '
                 'the keys: --list-config MODEL)')
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


@contextlib.contextmanager
def stop_on_first_ctrl_c():
  """The first Ctrl-C asks the loop to stop after its current chunk is saved (an interrupt inside orbax's or
  XLA's threads could hang); a second one interrupts at once."""
  from jaxae.loop import train

  def handler(signum, frame):
    if train.STOP.is_set():
      signal.default_int_handler(signum, frame)
    train.STOP.set()

  train.STOP.clear()
  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    train.STOP.clear()


def list_config(model: str) -> str:
  """One line per config key of `model`: name, default, meaning."""
  from jaxae import config as config_lib

  rows = config_lib.describe(model)
  width = max(len(k) for k, _, _ in rows)
  return '\n'.join(f'{k:<{width}}  {str(v):<14}  {meaning}' for k, v, meaning in rows)


def main(argv=None) -> int:
  p = parser()
  args = p.parse_args(argv)
  if args.list_config is None and args.workdir is None:
    p.error('the following arguments are required: --workdir')
  try:
    if args.list_config is not None:
      models.get(args.list_config)
      print(list_config(args.list_config))
      return 0
    from jaxae.loop import parallel
    from jaxae.loop.train import train_and_evaluate

    if asks_distributed(args):
      parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    with stop_on_first_ctrl_c():
      result = train_and_evaluate(overrides_from(args), args.workdir, progress=not args.no_progress)
  except UserError as e:
    errors.report('jaxae-train', str(e))
    return 2
  except KeyboardInterrupt:
    return interrupted('jaxae-train')
  if not parallel.is_primary():
    return 0
  final = {r['split']: r for r in result.records if r['epoch'] == result.config['epochs']}
  if 'eval' in final:
    shown = ', '.join(f'{k}={v:.4f}' for k, v in final['eval'].items() if k not in ('epoch', 'split', 'step'))
    print(f"epoch {final['eval']['epoch']} eval: {shown}")
  print(f'outputs in {os.path.abspath(args.workdir)}')
  return 0


def asks_distributed(args) -> bool:
  """Whether the command line asks to join several processes (`--distributed` or any of its options)."""
  return args.distributed or any(v is not None for v in (args.coordinator, args.num_processes, args.process_id))


def interrupted(program: str) -> int:
  """After the first Ctrl-C, once the workdir is saved: the one line, and the status 130."""
  sys.stderr.write(f'{program}: interrupted; re-run the same command to resume\n')
  return 130


def run() -> None:
  """The process entry point: `main()`'s status (`exit_with`)."""
  exit_with(main())


def exit_with(code: int) -> None:
  """Exits with `code`; after Ctrl-C (130) at once (the workdir is already consistent), so no late tracebacks of
  orbax's background threads follow the one line."""
  if code == 130:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
  sys.exit(code)


if __name__ == '__main__':
  run()
