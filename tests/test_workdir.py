"""The workdir contract: bad input gets one line and exit 2, and the workdir is left as it was."""

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import tiny
from test_cli import run_cli

from jaxae import metrics
from jaxae.loop import checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
SMALL = ['--set', 'hidden=16', '--set', 'latent_dim=2', '--no-progress']
TINY = ['--set', 'hidden=64,32', '--set', 'latent_dim=8', '--set', 'conv_features=8,16', '--batch-size', '64',
        '--no-progress']  # conftest.tiny() on the command line


def snapshot(path: Path) -> dict:
  return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def test_a_workdir_that_is_a_file_or_under_one(tmp_path, capsys):
  (tmp_path / 'file').write_text('mine')
  for workdir in (tmp_path / 'file', tmp_path / 'file' / 'run'):
    code, _, err = run_cli(capsys, '--workdir', str(workdir), *SMALL)
    assert code == 2 and err == f'jaxae-train: error: --workdir {workdir}: {tmp_path / "file"} is a file, not a ' \
                                'folder; give a folder path\n'
  assert (tmp_path / 'file').read_text() == 'mine'


def test_fewer_epochs_than_the_run_has_is_refused_and_changes_nothing(tmp_path, capsys):
  train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
  before = snapshot(tmp_path)
  code, _, err = run_cli(capsys, '--workdir', str(tmp_path), '--epochs', '1', *TINY)
  assert code == 2 and err.count('\n') == 1
  assert f'{tmp_path} holds a run trained for 52 steps (2 epochs); --epochs 1 (26 steps) is fewer' in err
  assert snapshot(tmp_path) == before
  rerun = train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)  # the same epochs: as it is
  assert [r['epoch'] for r in rerun.records if r['split'] == 'eval'] == [0, 1, 2]
  assert metrics.read(tmp_path / 'metrics.jsonl') == rerun.records


def test_a_garbage_manifest_gives_exactly_one_line(tmp_path):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  for manifest in (tmp_path / 'checkpoints').rglob('manifest.ocdbt'):
    manifest.write_bytes(b'garbage')
  before = snapshot(tmp_path)
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'train.py'), '--workdir', str(tmp_path), '--epochs',
                         '2', *TINY],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.startswith('jaxae-train: error: checkpoint 26 in ') and proc.stderr.count('\n') == 1, \
      proc.stderr[:3000]
  assert snapshot(tmp_path) == before


def test_ctrl_c_keeps_at_most_keep_checkpoints(tmp_path):
  proc = subprocess.Popen([sys.executable, str(ROOT / 'scripts' / 'train.py'), '--workdir', str(tmp_path),
                           '--epochs', '500', '--set', 'checkpoint_every=1', '--set', 'keep_checkpoints=2', *SMALL],
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and (checkpoint.latest_step(tmp_path / 'checkpoints') or 0) < 20:
    time.sleep(0.02)
  proc.send_signal(signal.SIGINT)
  err = proc.communicate(timeout=120)[1]
  assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
      'jaxae-train: interrupted; re-run the same command to resume')
  kept = [p.name for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()]
  assert len(kept) <= 2, kept


def test_a_relative_data_dir_is_saved_absolute_so_the_run_loads_from_anywhere(tmp_path, monkeypatch):
  import numpy as np
  from test_data import write_idx

  from jaxae.runs import load

  (tmp_path / 'idx').mkdir()
  write_idx(tmp_path / 'idx' / 't10k-images-idx3-ubyte', np.random.default_rng(0).integers(0, 255, (64, 8, 8),
                                                                                          np.uint8))
  monkeypatch.chdir(tmp_path)
  train.train_and_evaluate(tiny(epochs=1, dataset='idx', data_dir='idx', holdout=16), tmp_path / 'run',
                           progress=False)
  monkeypatch.chdir(ROOT)
  assert load(tmp_path / 'run').config['data_dir'] == str(tmp_path / 'idx')


def test_switching_the_model_names_the_model_first_and_counts_the_differences(tmp_path, capsys):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  before = snapshot(tmp_path)
  code, _, err = run_cli(capsys, '--workdir', str(tmp_path), '--model', 'ae', '--epochs', '1', *TINY)
  assert code == 2 and err.count('\n') == 1
  # model; beta, iwae_samples, prior (vae only); tied, noise, noise_level, input_dropout, dropout_rate (ae only)
  assert "another config (9 setting(s) differ: model: 'vae' there, 'ae' now, " in err, err
  assert snapshot(tmp_path) == before
