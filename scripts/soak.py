"""Kill-and-resume soak: SIGKILL training at random moments, resume, and check nothing was lost.

  python scripts/soak.py --model vae --cycles 20 --workdir runs/soak

Each cycle starts `scripts/train.py` on the same workdir, waits until it has
logged something new, sleeps a random 0-1 s (at most half the time the rest of the run took in the
uninterrupted reference run, trained first) and kills it with SIGKILL. Then a
last run finishes the job, and the soak checks that every epoch and split
appears exactly once in metrics.jsonl, that every kept checkpoint restores,
and that the final parameters equal, bit for bit, those of an uninterrupted
run with the same config, and that the TensorBoard events hold the same
tags at the same steps as that run's, each once. Prints a JSON report; exit 0 when all checks pass,
1 when one fails, 2 on bad input.
"""

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxae import config as config_lib
from jaxae import metrics, models, train_and_evaluate
from jaxae.errors import ArgumentParser, UserError
from jaxae.loop import checkpoint, tensorboard

TRAIN = Path(__file__).resolve().parent / 'train.py'
TINY = {'epochs': 40, 'batch_size': 64, 'latent_dim': 4, 'hidden': (32, 16), 'conv_features': (8, 16),
        'keep_checkpoints': 2}


def cli_args(config: dict) -> list[str]:
  args = ['--model', config['model']]
  for key, value in config.items():
    if key != 'model':
      text = ','.join(map(str, value)) if isinstance(value, tuple) else str(value)
      args += ['--set', f'{key}={text}']
  return args


def kill_cycle(config: dict, workdir: Path, rng: random.Random, epoch_seconds: list[float],
               timeout: float = 300) -> bool:
  """One start-wait-SIGKILL cycle; returns False if the run finished before the kill. The kill comes at a random
  moment within 1 s of the run's next record and within half the time the epochs after that record took in the
  reference run (`epoch_seconds[i]`: epoch i + 1), so that it lands in training on a machine of any speed."""
  seen = len(metrics.read(workdir / 'metrics.jsonl'))
  proc = subprocess.Popen([sys.executable, str(TRAIN), '--workdir', str(workdir), '--no-progress',
                           *cli_args(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  while len(records := metrics.read(workdir / 'metrics.jsonl')) <= seen and proc.poll() is None \
      and time.time() < deadline:
    time.sleep(0.01)
  to_come = sum(epoch_seconds[records[-1]['epoch']:]) if len(records) > seen else 0.0
  time.sleep(rng.uniform(0, min(1.0, to_come / 2)))
  finished = proc.poll() is not None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return not finished


def restorable_checkpoints(workdir: Path) -> list[int]:
  """Reads every kept checkpoint and checks its arrays are finite; returns their steps."""
  with checkpoint.Checkpointer(workdir / 'checkpoints') as ckpt:
    return [s for s in ckpt.steps() if all(np.isfinite(a).all() for a in jax.tree.leaves(ckpt.read(s)))]


def soak(config: dict, workdir: Path, cycles: int, seed: int) -> dict:
  rng = random.Random(seed)
  reference = train_and_evaluate(config, workdir / 'reference', progress=False)
  epoch_seconds = [r['seconds'] for r in reference.records if r['split'] == 'train']
  kills = sum(kill_cycle(config, workdir / 'killed', rng, epoch_seconds) for _ in range(cycles))
  resumed = train_and_evaluate(config, workdir / 'killed', progress=False)
  logged = [(r['epoch'], r['split']) for r in metrics.read(workdir / 'killed' / 'metrics.jsonl')]
  expected = [(r['epoch'], r['split']) for r in reference.records]
  events = lambda run: {tag: [s for s, _ in v] for tag, v in tensorboard.scalars(workdir / run).items()}
  weights = lambda state: jax.tree.leaves((state.params, state.batch_stats))  # batch norm's running averages too
  identical = all(np.array_equal(a, b) for a, b in zip(weights(reference.state), weights(resumed.state), strict=True))
  report = {'model': config['model'], 'cycles': cycles, 'kills': kills, 'epochs': config['epochs'],
            'metrics_complete_no_duplicates': logged == expected,
            'tensorboard_complete_no_duplicates': events('killed') == events('reference'),
            'checkpoints_restorable': restorable_checkpoints(workdir / 'killed'),
            'weights_bitwise_identical': bool(identical),
            'step': int(resumed.state.step), 'reference_step': int(reference.state.step)}
  report['ok'] = (report['metrics_complete_no_duplicates'] and report['tensorboard_complete_no_duplicates']
                  and report['weights_bitwise_identical']
                  and report['step'] == report['reference_step'] and bool(report['checkpoints_restorable']))
  return report


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='vae')
  p.add_argument('--workdir', required=True)
  p.add_argument('--cycles', type=int, default=20)
  p.add_argument('--epochs', type=int, default=TINY['epochs'])
  p.add_argument('--seed', type=int, default=0, help='seed of the kill moments')
  p.add_argument('--checkpoint-every', type=int, default=0, help='also checkpoint every N steps (0: epoch ends)')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='another config setting')
  args = p.parse_args(argv)
  try:
    if args.cycles < 1 or args.epochs < 1:
      raise UserError('--cycles and --epochs must be positive')
    models.get(args.model)
    tiny_critics = {'disc_hidden': TINY['hidden']} if 'disc_hidden' in models.get(args.model).defaults() else {}
    config = {**TINY, **tiny_critics, 'model': args.model, 'epochs': args.epochs,
              'checkpoint_every': args.checkpoint_every, **config_lib.parse_overrides(args.set, args.model)}
    report = soak(config, Path(args.workdir), args.cycles, args.seed)
  except UserError as e:
    print(f'soak: error: {e}', file=sys.stderr)
    return 2
  print(json.dumps(report))
  return 0 if report['ok'] else 1


if __name__ == '__main__':
  sys.exit(main())
