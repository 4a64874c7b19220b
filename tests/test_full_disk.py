"""Filesystems that fill up or refuse writes, for real (a small tmpfs): training's checkpoints, exports and records
folders each give one line and exit 2, and leave what was there in a state the same command continues from."""

import os
import subprocess
import sys

from conftest import fill
from test_cli import run_cli
from test_workdir import ROOT, SMALL, snapshot

import jaxae
from jaxae.loop import checkpoint

MiB = 1 << 20
KEPT = ('config.json', 'metrics.jsonl', 'checkpoints')  # what a later start reads (TensorBoard drops later steps)


def kept(run) -> dict:
  return {p: b for p, b in snapshot(run).items() if p.parts[0] in KEPT}


def test_a_disk_full_at_a_checkpoint_is_one_line_and_the_run_resumes_from_the_last_one(small_disk, capsys):
  run = small_disk(4 * MiB) / 'run'
  assert run_cli(capsys, '--workdir', str(run), '--epochs', '1', *SMALL)[0] == 0
  before = kept(run)
  fill(run.parent, leave=200_000)
  code, _, err = run_cli(capsys, '--workdir', str(run), '--epochs', '3', *SMALL)
  assert code == 2 and err.count('\n') == 1, err
  assert err.startswith(f'jaxae-train: error: cannot write {run / "checkpoints" / "26"}: No space left on device ')
  assert '(ENOSPC); the checkpoint at step 13 is the last good state and is kept' in err
  assert kept(run) == before  # config.json (epochs 1), metrics.jsonl (to epoch 1) and checkpoint 13, as they were
  assert not list((run / 'checkpoints').glob('*tmp*'))
  (run.parent / 'filler').unlink()
  assert run_cli(capsys, '--workdir', str(run), '--epochs', '3', *SMALL)[0] == 0
  records = jaxae.metrics.read(run / 'metrics.jsonl')
  assert [(r['epoch'], r['split']) for r in records] == [(0, 'eval')] + [(e, s) for e in (1, 2, 3)
                                                                         for s in ('train', 'eval')]


def test_a_disk_filled_while_orbax_writes_in_the_background_ends_in_the_same_line(small_disk):
  """The free-space check before a save passes (here: told so), and the disk fills while orbax writes: the failure
  surfaces at the next save or at the end as the same line, with the uncommitted folder removed. (Orbax's own
  threads print their reports of the failure around it: this path is not one line.)"""
  run = small_disk(4 * MiB) / 'run'
  fill(run.parent, leave=1 * MiB)
  lie = ('import shutil, sys; real = shutil.disk_usage; shutil.disk_usage = lambda p: real(p)._replace(free=1 << 40);'
         'from jaxae import cli; sys.exit(cli.main(sys.argv[1:]))')
  big = ['--set', 'hidden=256,256', '--set', 'latent_dim=2', '--no-progress']  # 2.4 MB an Adam state
  proc = subprocess.run([sys.executable, '-c', lie, '--workdir', str(run), '--epochs', '3', *big],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  ours = [line for line in proc.stderr.splitlines() if line.startswith('jaxae-train: error: ')]
  assert proc.returncode == 2 and ours == [
      f'jaxae-train: error: cannot write {run / "checkpoints"}: No space left on device (ENOSPC); no checkpoint had '
      'been saved yet: free space, fix the permissions or give another folder, then re-run the same command'], ours
  assert checkpoint.step_folders(run / 'checkpoints') == [] and not list((run / 'checkpoints').glob('*tmp*'))
  assert jaxae.metrics.read(run / 'metrics.jsonl') == []  # no checkpoint: no epoch it could resume after


def test_an_export_that_fills_the_disk_keeps_the_earlier_export_or_leaves_nothing(tmp_path, small_disk, capsys):
  from test_export import export

  assert run_cli(capsys, '--workdir', str(tmp_path / 'run'), '--epochs', '1', '--set', 'hidden=640,640',
                 '--set', 'latent_dim=2', '--no-progress')[0] == 0  # 3.3 MB of weights
  disk = small_disk(8 * MiB)
  fill(disk, leave=2 * MiB)
  assert export.main([str(tmp_path / 'run'), str(disk / 'new')]) == 2
  err = capsys.readouterr().err
  assert err == (f'export: error: cannot write {disk / "new" / ".jaxae-export" / "model.tmp"}: No space left on '
                 'device (ENOSPC); nothing was left there: free space, fix the permissions or give another folder, '
                 'then re-run the same command\n')
  assert sorted(p.name for p in disk.iterdir()) == ['filler']
  (disk / 'filler').unlink()
  assert export.main([str(tmp_path / 'run'), str(disk / 'out')]) == 0
  earlier = snapshot(disk / 'out')
  fill(disk, leave=2 * MiB)
  assert export.main([str(tmp_path / 'run'), str(disk / 'out')]) == 2
  assert 'No space left on device (ENOSPC); the export there is kept as it was' in capsys.readouterr().err
  assert snapshot(disk / 'out') == earlier and jaxae.load(disk / 'out').step == 13


def test_a_read_only_folder_is_one_line_for_exports_and_training(tmp_path, small_disk, capsys):
  from test_export import export

  assert run_cli(capsys, '--workdir', str(tmp_path / 'run'), '--epochs', '1', *SMALL)[0] == 0
  disk = small_disk(MiB, read_only=True)
  assert export.main([str(tmp_path / 'run'), str(disk / 'out')]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'Read-only file system (EROFS)' in err, err
  code, _, err = run_cli(capsys, '--workdir', str(disk / 'run'), '--epochs', '1', *SMALL)
  assert code == 2 and err.count('\n') == 1 and 'Read-only file system (EROFS)' in err, err
  assert os.listdir(disk) == []


def test_records_that_fill_the_disk_are_one_line_and_leave_nothing(small_disk, capsys):
  from test_export import script

  make_records = script('make_records')
  disk = small_disk(300_000)
  assert make_records.main(['--dataset', 'digits', '--out', str(disk / 'records')]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'make_records: error: cannot write {disk}/.records-') and err.count('\n') == 1, err
  assert 'No space left on device (ENOSPC); nothing in ' in err and os.listdir(disk) == []
