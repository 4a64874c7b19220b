"""Crash safety: SIGKILL a real training process at a random moment, re-run, and compare bitwise.

Parameterized over every family, so families added later are covered by the same test.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxae import metrics, models, train

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8
ARGS = ['--epochs', str(EPOCHS), '--batch-size', '64', '--latent-dim', '4', '--set', 'hidden=32,16',
        '--set', 'keep_checkpoints=2']


def overrides(name):
  return {'model': name, 'epochs': EPOCHS, 'batch_size': 64, 'latent_dim': 4, 'hidden': (32, 16),
          'keep_checkpoints': 2}


def kill_midway(name, workdir: Path, rng: random.Random) -> None:
  """Starts the CLI, waits for its first finished epoch, then SIGKILLs it at a random moment."""
  proc = subprocess.Popen([sys.executable, str(ROOT / 'scripts' / 'train.py'), '--model', name, '--workdir',
                           str(workdir), '--no-progress', *ARGS], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while len(metrics.read(workdir / 'metrics.jsonl')) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  time.sleep(rng.uniform(0, 0.4))
  proc.send_signal(signal.SIGKILL)
  proc.wait()


@pytest.mark.parametrize('name', models.names())
def test_sigkill_then_rerun_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, name):
  rng = random.Random(int.from_bytes(os.urandom(4), 'little'))
  reference = train.train_and_evaluate(overrides(name), tmp_path / 'reference', progress=False)
  kill_midway(name, tmp_path / 'killed', rng)
  resumed = train.train_and_evaluate(overrides(name), tmp_path / 'killed', progress=False)
  for a, b in zip(jax.tree.leaves(reference.state.params), jax.tree.leaves(resumed.state.params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert int(resumed.state.step) == int(reference.state.step)
  epochs = [(r['epoch'], r['split']) for r in metrics.read(tmp_path / 'killed' / 'metrics.jsonl')]
  assert epochs == [(r['epoch'], r['split']) for r in reference.records]  # none lost, none twice
