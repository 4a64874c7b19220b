"""Nothing lost: folders that are not runs, one writer at a time, advice that is right, data that changed,
filesystems that refuse. Each case: one line, and every byte already there kept."""

import errno
import json
import logging
import re

import jax
import numpy as np
import pytest
from conftest import tiny
from test_cli import run_cli
from test_workdir import SMALL, snapshot

from jaxae import data
from jaxae.errors import UserError
from jaxae.loop import checkpoint, lock, train
from jaxae.runs import load

DIGITS = data.load_digits()['train']


def test_a_folder_that_is_not_a_run_is_never_taken_for_one(tmp_path, capsys):
  """The user's own `checkpoints/100/` (no config.json) was read as a run trained for 100 steps, and following the
  advice deleted folders. Now: refused, untouched."""
  mine = tmp_path / 'mine'
  (mine / 'checkpoints' / '100').mkdir(parents=True)
  (mine / 'checkpoints' / '100' / 'notes.txt').write_text('my notes')
  (mine / 'checkpoints' / '7').mkdir()
  before = snapshot(mine)
  for epochs in ('1', '500'):
    code, _, err = run_cli(capsys, '--workdir', str(mine), '--epochs', epochs, *SMALL)
    assert code == 2 and err == (f'jaxae-train: error: {mine} holds no jaxae run (no config.json) but is not empty '
                                 '(checkpoints): give a new or empty folder\n')
  assert snapshot(mine) == before and (mine / 'checkpoints' / '7').is_dir()
  assert checkpoint.step_folders(mine / 'checkpoints') == []  # numbered folders without orbax's metadata: not ours


@pytest.mark.parametrize('workdir', ['', '  '])
def test_an_empty_workdir_is_refused(tmp_path, capsys, monkeypatch, workdir):
  monkeypatch.chdir(tmp_path)
  code, _, err = run_cli(capsys, '--workdir', workdir, *SMALL)
  assert code == 2 and err == 'jaxae-train: error: --workdir is empty: give the folder of the run, e.g. --workdir ' \
                              'runs/vae\n'
  assert list(tmp_path.iterdir()) == []


def test_one_writer_at_a_time_and_no_stale_lock(tmp_path):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  before = snapshot(tmp_path)
  with lock.held(tmp_path):  # another run, alive
    with pytest.raises(UserError, match=r'is being written by another run \(it holds .lock there\); wait for it'):
      train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)
    assert snapshot(tmp_path) == before
  result = train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False)  # released: it goes on
  assert result.records[-1]['epoch'] == 2


def test_a_checkpoint_of_another_shape_is_called_intact_and_no_deletion_is_advised(tmp_path):
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  saved = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps({**saved, 'hidden': [48, 24]}))  # as if edited by hand
  before = snapshot(tmp_path)
  with pytest.raises(UserError) as e:
    load(tmp_path)
  message = str(e.value)
  assert re.search(r'holds the state of another model or input shape than this run builds \(\([\d, ]+\) float32 '
                   r'there, \([\d, ]+\) float32 here\): it is intact', message), message
  assert 'it is intact' in message and 'delete' not in message and 'move' not in message
  assert snapshot(tmp_path) == before


def test_a_checkpoint_damaged_into_nans_is_called_damaged_not_a_learning_rate_problem(tmp_path):
  result = train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False)
  poisoned = jax.tree.map(lambda a: np.full(a.shape, np.nan, a.dtype) if a.dtype == np.float32 else a,
                          result.state)
  with checkpoint.Checkpointer(tmp_path / 'checkpoints') as ckpt:
    ckpt.save(52, poisoned, {})  # as if bits flipped on disk in a later checkpoint
  with pytest.raises(UserError, match='checkpoint 52 in .* holds NaN or Inf values, which jaxae never saves: its '
                     'files are damaged; move that step folder out of checkpoints/ to resume from step 26'):
    train.train_and_evaluate(tiny(epochs=3), tmp_path, progress=False)


def test_resuming_or_evaluating_on_other_data_is_refused_with_what_changed(tmp_path):
  """Resume on other arrays trained on them silently; now one line says what changed, unless asked for."""
  pixels = (DIGITS['image'][..., 0] * 255).astype(np.uint8)
  own = data.from_arrays(pixels[:1500], DIGITS['label'][:1500], pixels[1500:], DIGITS['label'][1500:])
  train.train_and_evaluate(tiny(epochs=1), tmp_path, progress=False, data=own)
  before = snapshot(tmp_path)
  fewer = data.from_arrays(pixels[:1400], DIGITS['label'][:1400], pixels[1500:], DIGITS['label'][1500:])
  with pytest.raises(UserError, match='holds a run trained on other data \\(train images 1500 then, 1400 now\\)'):
    train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False, data=fewer)
  shifted = data.from_arrays(pixels[:1500][::-1], DIGITS['label'][:1500][::-1], pixels[1500:], DIGITS['label'][1500:])
  with pytest.raises(UserError, match='other data \\(train images or labels differ\\).*allow_other_data=true'):
    train.train_and_evaluate(tiny(epochs=2), tmp_path, progress=False, data=shifted)
  assert snapshot(tmp_path) == before
  with pytest.raises(UserError, match='are not those it was trained on \\(train images 1500 then, 1400 now\\)'):
    _ = load(tmp_path, data=fewer).splits
  assert load(tmp_path, data=own).splits.train['image'].shape == (1500, 8, 8, 1)
  result = train.train_and_evaluate(tiny(epochs=2, allow_other_data=True), tmp_path, progress=False, data=shifted)
  assert result.records[-1]['epoch'] == 2  # meant it: resumed, and the new data are now the run's
  assert load(tmp_path, data=shifted).splits.train['image'].shape == (1500, 8, 8, 1)


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG])
def test_a_filesystem_that_refuses_mid_run_gives_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys,
                                                                                        monkeypatch, code):
  saves = []
  real_save = checkpoint.Checkpointer.save

  def save(self, step, state, loop, config=None):
    saves.append(step)
    if len(saves) == 2:
      raise OSError(code, __import__('os').strerror(code), str(self.manager.directory / str(step)))
    real_save(self, step, state, loop, config)

  monkeypatch.setattr(checkpoint.Checkpointer, 'save', save)
  status, _, err = run_cli(capsys, '--workdir', str(tmp_path), '--epochs', '3', *SMALL)
  assert status == 2 and err.count('\n') == 1, err
  assert err.startswith(f'jaxae-train: error: cannot write {tmp_path / "checkpoints" / "26"}: ')  # 13 steps an epoch
  assert f'({errno.errorcode[code]}); the checkpoint at step 13 is the last good state and is kept' in err
  assert checkpoint.step_folders(tmp_path / 'checkpoints') == [13]


@pytest.mark.parametrize('argv,message', [
    (['--workdir', 'x', '--epochs', 'ten'], "argument --epochs: invalid int value: 'ten'"),
    (['--epochs', '3'], 'the following arguments are required: --workdir'),
    (['--workdir', 'x', '--bogus'], 'unrecognized arguments: --bogus'),
])
def test_a_bad_flag_is_one_line_not_the_usage_block(tmp_path, capsys, monkeypatch, argv, message):
  from jaxae import cli

  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit) as e:
    cli.main(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count('\n') == 1 and message in err, err
  assert err.startswith('jaxae-train: error: ') and err.endswith('; see jaxae-train --help\n')
  assert list(tmp_path.iterdir()) == []


def _damage(path, at: float, n: int = 64, truncate: bool = False):
  raw = bytearray(path.read_bytes())
  if truncate:
    path.write_bytes(bytes(raw[:int(len(raw) * at)]))
    return
  i = int(len(raw) * at)
  raw[i:i + n] = bytes(b ^ 0xFF for b in raw[i:i + n])
  path.write_bytes(bytes(raw))


def test_damaged_records_are_one_line_before_anything_is_written_or_mid_run_at_the_last_checkpoint(tmp_path,
                                                                                                  capsys):
  """A truncated file is seen before the run writes anything; damage deep in a file (checksums) stops the run
  where it is read, with one line naming the file, the last good checkpoint kept and config.json unchanged."""
  from jaxae.data import records

  pixels = (DIGITS['image'] * 255).astype(np.uint8)
  folder = tmp_path / 'records'
  records.write(folder, 'train', records.chunks_of(pixels[:1500], DIGITS['label'][:1500], size=400))
  records.write(folder, 'test', records.chunks_of(pixels[1500:], DIGITS['label'][1500:]))
  args = ['--set', 'hidden=16', '--set', 'latent_dim=2', '--dataset', 'records', '--data-dir', str(folder)]
  code, _, err = run_cli(capsys, '--workdir', str(tmp_path / 'run'), '--epochs', '1', *args)
  assert code == 0, err
  before = snapshot(tmp_path / 'run')
  original = (folder / 'train.array_record').read_bytes()
  _damage(folder / 'train.array_record', 0.9, truncate=True)
  code, _, err = run_cli(capsys, '--workdir', str(tmp_path / 'new'), '--epochs', '3', *args)
  assert code == 2 and err == (f'jaxae-train: error: {folder / "train.array_record"} is damaged (its index lists 0 '
                               'records, meta.json 1500); rebuild the records folder (scripts/make_records.py)\n')
  assert not (tmp_path / 'new').exists()
  (folder / 'train.array_record').write_bytes(original)
  _damage(folder / 'train.array_record', 0.5)
  code, _, err = run_cli(capsys, '--workdir', str(tmp_path / 'run'), '--epochs', '3', *args)
  assert code == 2 and err.count('\n') == 1, err
  assert err.startswith(f'jaxae-train: error: {folder / "train.array_record"} is damaged (Corrupted Riegeli')
  assert snapshot(tmp_path / 'run') == before  # config.json (epochs 1) too: the failed resume changed nothing


@pytest.mark.parametrize('name', ['x' * 300, 'x' * 200 + '/' + 'y' * 300, '/proc/jaxae-run'])
def test_a_workdir_the_filesystem_refuses_is_one_line(tmp_path, capsys, name):
  workdir = name if name.startswith('/') else str(tmp_path / name)
  code, _, err = run_cli(capsys, '--workdir', workdir, '--epochs', '1', *SMALL)
  assert code == 2 and err.count('\n') == 1 and err.startswith('jaxae-train: error: '), err
  assert ('File name too long' in err) or ('No such file or directory' in err), err


def test_an_unprepared_tfds_dataset_is_one_line_without_absl_warnings(tmp_path):
  import os
  import subprocess
  import sys

  from test_workdir import ROOT

  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'train.py'), '--workdir', str(tmp_path / 'run'),
                         '--dataset', 'mnist', '--no-progress'], capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'TFDS_DATA_DIR': str(tmp_path / 'tfds')})
  assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr
  assert proc.stderr.startswith("jaxae-train: error: TFDS dataset 'mnist' split 'train' is not prepared in ")
  assert not (tmp_path / 'run').exists()


def test_no_figure_images_writes_the_loss_figure_alone(tmp_path):
  train.train_and_evaluate(tiny(epochs=1, num_figure_images=0), tmp_path, progress=False)  # crashed: modulo by 0
  assert sorted(p.name for p in (tmp_path / 'figures').iterdir()) == ['loss.png']


def test_damaged_orbax_step_metadata_with_intact_arrays_resumes_without_a_word(tmp_path, capfd, caplog):
  """It resumed, printing two ERROR:absl reports of the metadata (the writer's checkpoint manager read it at start;
  it no longer does, and readers never read it)."""
  train.train_and_evaluate(tiny(epochs=1), tmp_path / 'damaged', progress=False)
  (tmp_path / 'damaged' / 'checkpoints' / '26' / checkpoint.METADATA).write_text('{garbage')
  capfd.readouterr()
  assert load(tmp_path / 'damaged').step == 26
  caplog.set_level(logging.WARNING)
  resumed = train.train_and_evaluate(tiny(epochs=2), tmp_path / 'damaged', progress=False)
  assert capfd.readouterr().err == '' and [r.getMessage() for r in caplog.records] == []
  whole = train.train_and_evaluate(tiny(epochs=2), tmp_path / 'whole', progress=False)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.state.params),
                                                  jax.tree.leaves(whole.state.params), strict=True))
