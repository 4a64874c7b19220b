"""Kill-and-resume soak: SIGKILL training at random moments, resume, and check nothing was lost.

  python scripts/soak.py --model vae --cycles 20 --workdir runs/soak

Each cycle starts `scripts/train.py` on the same workdir, waits until it has
logged something new, sleeps a random 0-1 s (at most half the time the rest of the run took in the
uninterrupted reference run, trained first) and kills it with SIGKILL. Then a
last run finishes the job, and the soak checks that every epoch and split
appears exactly once in metrics.jsonl, that every kept checkpoint restores,
and that the final parameters equal, bit for bit, those of an uninterrupted
run with the same config, and that the TensorBoard events hold the same
tags at the same steps as that run's, each once. With --reads N, each cycle
first reads the run N times while it trains (paused meanwhile with SIGSTOP,
so its files can be compared before and after each read: jaxae.load, the
evaluation and export scripts must change none of them, and the run must
go on). Prints a JSON report; exit 0 when all checks pass, 1 when one fails,
2 on bad input.
"""

import argparse
import contextlib
import importlib.util
import io
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
from jaxae import errors, load, metrics, models, train_and_evaluate
from jaxae.errors import ArgumentParser, UserError
from jaxae.loop import restore, tensorboard

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


def kill_cycle(config: dict, workdir: Path, rng: random.Random, epoch_seconds: list[float], reads: int,
               report: dict, timeout: float = 300) -> None:
  """One start-wait-SIGKILL cycle, counted in `report['kills']` unless the run finished before the kill. The kill
  comes at a random moment within 1 s of the run's next record and within half the time the epochs after that
  record took in the reference run (`epoch_seconds[i]`: epoch i + 1), so that it lands in training on a machine of
  any speed. Before it, `reads` times, the run is read while it trains (`read_while_paused`)."""
  seen = len(metrics.read(workdir / 'metrics.jsonl'))
  proc = subprocess.Popen([sys.executable, str(TRAIN), '--workdir', str(workdir), '--no-progress',
                           *cli_args(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + timeout
  while len(records := metrics.read(workdir / 'metrics.jsonl')) <= seen and proc.poll() is None \
      and time.time() < deadline:
    time.sleep(0.01)
  to_come = sum(epoch_seconds[records[-1]['epoch']:]) if len(records) > seen else 0.0
  while reads and restore.latest_step(workdir / 'checkpoints') is None and proc.poll() is None:
    time.sleep(0.01)  # something to read
  for _ in range(reads):
    time.sleep(rng.uniform(0, min(0.5, to_come / (2 * reads + 2))))
    if proc.poll() is None:
      read_while_paused(proc, workdir, report)
  time.sleep(rng.uniform(0, min(1.0, to_come / 2)))
  if proc.poll() is not None:  # finished before the kill: it must have finished well
    report['writer_errors'] += [proc.stderr.read().decode()[-2000:]] if proc.returncode else []
    return
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  report['kills'] += 1


def snapshot(folder: Path) -> dict:
  """`{relative path: bytes}` of every file under `folder`, and `None` for every folder."""
  return {p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob('*'))}


def read_while_paused(proc: subprocess.Popen, workdir: Path, report: dict) -> None:
  """Pauses the training process (SIGSTOP: its checkpoint in the background stops where it is), reads the run
  with `jaxae.load`, `scripts/evaluate.py` and `scripts/export.py` (into folders of their own), checks that the
  run's files are byte for byte as they were, and lets it go on (SIGCONT)."""
  proc.send_signal(signal.SIGSTOP)
  try:
    stopped(proc)
    before = snapshot(workdir)
    loaded = load(workdir)
    out = workdir.parent / 'reads'
    suites = ['reconstruction'] if models.can(loaded.model, 'encode') else []
    with contextlib.redirect_stdout(io.StringIO()):  # their reports: stdout is the soak's JSON
      evaluated = not suites or script('evaluate').main(
          [str(workdir), '--suites', *suites, '--no-progress', '--out', str(out / 'eval')]) == 0
      exported = script('export').main([str(workdir), str(out / 'export')]) == 0
    report['reads'] += 1
    report['reads_failed'] += not (evaluated and exported and load(out / 'export').step == loaded.step)
    report['reads_changed_the_run'] += snapshot(workdir) != before
  finally:
    proc.send_signal(signal.SIGCONT)


def stopped(proc: subprocess.Popen, timeout: float = 10) -> None:
  """Waits until the kernel has stopped `proc` (SIGSTOP is delivered asynchronously): state T in /proc."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    try:
      state = Path(f'/proc/{proc.pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:  # no /proc here: give the signal a moment
      time.sleep(0.1)
      return
    if state in ('T', 't', 'Z', 'X'):
      return
    time.sleep(0.001)


def script(name: str):
  """scripts/`name`.py as a module."""
  spec = importlib.util.spec_from_file_location(name, TRAIN.parent / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def restorable_checkpoints(workdir: Path) -> list[int]:
  """Reads every kept checkpoint and checks its arrays are finite; returns their steps."""
  directory = workdir / 'checkpoints'
  return [s for s in restore.step_folders(directory)
          if all(np.isfinite(a).all() for a in jax.tree.leaves(restore.read(directory, s)))]


def soak(config: dict, workdir: Path, cycles: int, seed: int, reads: int = 0) -> dict:
  rng = random.Random(seed)
  reference = train_and_evaluate(config, workdir / 'reference', progress=False)
  epoch_seconds = [r['seconds'] for r in reference.records if r['split'] == 'train']
  report = {'model': config['model'], 'cycles': cycles, 'kills': 0, 'epochs': config['epochs'], 'reads': 0,
            'reads_failed': 0, 'reads_changed_the_run': 0, 'writer_errors': []}
  for _ in range(cycles):
    kill_cycle(config, workdir / 'killed', rng, epoch_seconds, reads, report)
  resumed = train_and_evaluate(config, workdir / 'killed', progress=False)
  logged = [(r['epoch'], r['split']) for r in metrics.read(workdir / 'killed' / 'metrics.jsonl')]
  expected = [(r['epoch'], r['split']) for r in reference.records]
  events = lambda run: {tag: [s for s, _ in v] for tag, v in tensorboard.scalars(workdir / run).items()}
  weights = lambda state: jax.tree.leaves((state.params, state.batch_stats))  # batch norm's running averages too
  identical = all(np.array_equal(a, b) for a, b in zip(weights(reference.state), weights(resumed.state), strict=True))
  report.update({'metrics_complete_no_duplicates': logged == expected,
            'tensorboard_complete_no_duplicates': events('killed') == events('reference'),
            'checkpoints_restorable': restorable_checkpoints(workdir / 'killed'),
            'weights_bitwise_identical': bool(identical),
            'step': int(resumed.state.step), 'reference_step': int(reference.state.step)})
  report['ok'] = (report['metrics_complete_no_duplicates'] and report['tensorboard_complete_no_duplicates']
                  and report['weights_bitwise_identical'] and not report['writer_errors']
                  and not report['reads_failed'] and not report['reads_changed_the_run']
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
  p.add_argument('--reads', type=int, default=0, help='each cycle, before its kill, read the run N times while it '
                 'trains (load, evaluate, export), checking that its files stay as they were')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='another config setting')
  args = p.parse_args(argv)
  try:
    if args.cycles < 1 or args.epochs < 1 or args.reads < 0:
      raise UserError('--cycles and --epochs must be positive, --reads not negative')
    models.get(args.model)
    tiny_critics = {'disc_hidden': TINY['hidden']} if 'disc_hidden' in models.get(args.model).defaults() else {}
    config = {**TINY, **tiny_critics, 'model': args.model, 'epochs': args.epochs,
              'checkpoint_every': args.checkpoint_every, **config_lib.parse_overrides(args.set, args.model)}
    report = soak(config, Path(args.workdir), args.cycles, args.seed, args.reads)
  except UserError as e:
    errors.report('soak', str(e))
    return 2
  print(json.dumps(report))
  return 0 if report['ok'] else 1


if __name__ == '__main__':
  sys.exit(main())
