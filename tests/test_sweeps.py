"""Sweeps: members stacked in one program equal their single runs; failures and early stops stay per member; a
sweep resumes after SIGKILL; members spread over devices; the CLI and the readers treat a member as a run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny
from test_parallel import xla_flags

import jaxae
from jaxae import config as config_lib
from jaxae import models
from jaxae.errors import UserError
from jaxae.loop import restore
from jaxae.sweeps import cli as sweeps_cli
from jaxae.sweeps import group as group_lib
from jaxae.sweeps import plan, report

ROOT = Path(__file__).resolve().parents[1]
BASE = tiny(hidden=(32,), epochs=2)
QUIET = {'progress': False, 'echo': lambda line: None}


def records(workdir):
  """metrics.jsonl's epoch records without their timings."""
  lines = [json.loads(line) for line in (Path(workdir) / 'metrics.jsonl').read_text().splitlines()]
  return [{k: v for k, v in r.items() if k not in ('seconds', 'examples_per_sec')} for r in lines if 'split' in r]


def assert_close_records(a, b, rtol=1e-5):
  assert [{k: v for k, v in r.items() if isinstance(v, str)} for r in a] == [
      {k: v for k, v in r.items() if isinstance(v, str)} for r in b]
  for x, y in zip(a, b, strict=True):
    assert sorted(x) == sorted(y)
    np.testing.assert_allclose([x[k] for k in sorted(x) if k != 'split'], [y[k] for k in sorted(y) if k != 'split'],
                               rtol=rtol)


def assert_close_trees(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_grid_members_and_groups():
  assert plan.grid(seeds=2, beta=[0.5, 1.0]) == [{'beta': 0.5, 'seed': 0}, {'beta': 0.5, 'seed': 1},
                                                   {'beta': 1.0, 'seed': 0}, {'beta': 1.0, 'seed': 1}]
  assert plan.parse_grid(['beta=0.5,1', 'noise_level=0.1']) == {'beta': ['0.5', '1'], 'noise_level': ['0.1']}
  for bad in (['beta'], ['beta=0.5', 'beta=1']):
    with pytest.raises(UserError, match='--grid'):
      plan.parse_grid(bad)
  vae = models.get('vae')
  configs = [config_lib.resolve({**BASE, **m}) for m in ({'beta': 0.5, 'seed': 0}, {'beta': 2.0, 'seed': 3},
                                                          {'latent_dim': 4}, {'learning_rate': 1e-2})]
  # values of the step (beta) and the seed stack; shapes (latent_dim) and the optimizer (learning_rate) do not
  assert plan.groups(vae, configs) == [[0, 1], [2], [3]]
  assert plan.member_name(3, {'beta': 0.5, 'data_dir': '/a b'}) == '03-beta=0.5-data_dir=_a_b'


def test_bad_sweeps_are_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
  for base, members, message in [({**BASE, 'data_mode': 'streaming'}, [{'seed': 0}], 'a sweep keeps its data on the '
                                   'device'), (BASE, [], 'a sweep needs at least one member'),
                                  (BASE, [{'beta': -1.0}], 'beta must be >= 0'),
                                  ({**BASE}, [{'model': 'gan'}, {'model': 'vae'}], 'a sweep trains one family')]:
    with pytest.raises(UserError, match=message):
      jaxae.sweep(base, members, tmp_path / 's', **QUIET)
    assert not (tmp_path / 's').exists()
  assert sweeps_cli.main(['--workdir', str(tmp_path / 's'), '--distributed']) == 2
  assert capsys.readouterr().err == ('jaxae-sweep: error: a sweep runs in one process: --distributed and its options '
                                     'are for scripts/train.py; on several hosts, run one sweep per host\n')
  monkeypatch.setattr(jax, 'process_count', lambda: 2)  # as under jax.distributed with two processes
  with pytest.raises(UserError, match='^a sweep runs in one process'):
    jaxae.sweep(BASE, [{'seed': 0}], tmp_path / 's', **QUIET)


def test_members_equal_their_single_runs_and_a_failing_member_is_frozen_and_named(tmp_path):
  """Three denoising AEs in one program, one of them with a noise level that makes its first step non-finite:
  it is marked failed with its step and term and keeps its initial weights, while the other two train as their
  single runs do: their records and weights within float32 rounding after 26 steps (vmap makes the matmuls
  batched, whose kernels round differently on XLA CPU, so not bitwise; measured: 3e-8 at most in the weights)."""
  base = {**BASE, 'model': 'dae', 'noise': 'gaussian'}
  result = jaxae.sweep(base, [{'noise_level': 0.1}, {'noise_level': 0.5}, {'noise_level': 1e38}], tmp_path / 's',
                       **QUIET)
  assert [r['status'] for r in result.rows] == ['trained', 'trained', 'failed']
  assert (result.rows[2]['step'], result.rows[2]['term']) == (0, 'loss')
  single = jaxae.train_and_evaluate({**base, 'noise_level': 0.5}, tmp_path / 'single', progress=False)
  member = tmp_path / 's' / 'members' / '01-noise_level=0.5'
  assert_close_records(records(member), records(tmp_path / 'single'))
  assert_close_trees(result.states[1].params, single.state.params)
  assert not np.array_equal(jax.tree.leaves(result.states[0].params)[0], jax.tree.leaves(single.state.params)[0])
  fresh = jaxae.sweep(base, [{'noise_level': 1e38}], tmp_path / 'fresh', **{**QUIET})
  assert_close_trees(result.states[2].params, fresh.states[0].params, rtol=0, atol=0)  # frozen where it began
  loaded = jaxae.load(member)  # a member is a run: it loads, and its numbers are the run's
  assert loaded.finished and loaded.step == single.records[-1]['step']
  table = (tmp_path / 's' / 'sweep.md').read_text()
  assert 'failed: non-finite loss at step 0' in table and table.count('| trained |') == 2


def test_early_stopping_masks_a_member_whose_held_out_metric_stops_improving():
  rows = [group_lib.new_status() for _ in range(2)]
  for epoch, losses in enumerate([(3.0, 3.0), (2.0, 3.0), (2.5, 3.0), (2.4, 1.0)], start=1):
    group_lib.early_stop(rows, [{'loss': v} for v in losses], 'loss', patience=2, epoch=epoch)
  assert rows[0]['status'] == 'stopped' and rows[0]['epoch'] == 4 and rows[0]['best'] == 2.0
  assert rows[1]['status'] == 'stopped' and rows[1]['epoch'] == 3  # 1.0 came after it had stopped


def test_a_sweep_stops_members_early_and_the_others_train_on(tmp_path):
  """learning_rate 1e-12 for one group (updates below float32's resolution): its held-out loss never improves on
  the first evaluation after training began, so its members stop `patience` evaluations later (metrics.jsonl
  ends there); a group with a learning rate trains all epochs."""
  members = [{'learning_rate': 1e-12, 'seed': 0}, {'learning_rate': 1e-12, 'seed': 1}, {'seed': 2}]
  result = jaxae.sweep({**BASE, 'epochs': 4}, members, tmp_path / 's', patience=2, **QUIET)
  assert [r['status'] for r in result.rows] == ['stopped', 'stopped', 'trained']
  assert [r['epoch'] for r in result.rows[:2]] == [3, 3]  # epoch 1 set the best; 2 and 3 did not better it
  kept = records(tmp_path / 's' / 'members' / '00-learning_rate=1e-12-seed=0')
  assert max(r['epoch'] for r in kept) == 3
  assert max(r['epoch'] for r in records(tmp_path / 's' / 'members' / '02-seed=2')) == 4
  assert json.loads((tmp_path / 's' / 'sweep.json').read_text())['groups'] == [[0, 1], [2]]


def sweep_cli(workdir, *args, **kwargs):
  return subprocess.run([sys.executable, 'scripts/sweep.py', '--workdir', str(workdir), '--no-progress', *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def test_a_killed_sweep_resumes_bitwise_and_a_changed_grid_is_refused(tmp_path):
  args = ['--model', 'vae', '--set', 'hidden=32', '--epochs', '12', '--grid', 'beta=0.5,2', '--seeds', '2',
          '--set', 'checkpoint_epochs=1']
  reference = sweep_cli(tmp_path / 'reference', *args)
  assert reference.returncode == 0, reference.stderr[-2000:]
  proc = subprocess.Popen([sys.executable, 'scripts/sweep.py', '--workdir', str(tmp_path / 'killed'),
                           '--no-progress', *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  program = tmp_path / 'killed' / 'checkpoints' / 'program-0'  # the members' stacked states, saved each epoch
  deadline = time.time() + 120
  while time.time() < deadline and len(restore.step_folders(program)) < 2:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = restore.step_folders(program)[-1]
  proc = subprocess.Popen([sys.executable, 'scripts/sweep.py', '--workdir', str(tmp_path / 'killed'),
                           '--no-progress', *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)  # resumed, then stopped with Ctrl-C: the members' own checkpoints are written
  while time.time() < deadline and restore.step_folders(program)[-1] <= killed_at:
    time.sleep(0.02)
  proc.send_signal(signal.SIGINT)
  err = proc.communicate(timeout=120)[1]
  assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
      'jaxae-sweep: interrupted; re-run the same command to resume')
  stopped = jaxae.load(tmp_path / 'killed' / 'members' / '03-beta=2-seed=1')
  assert not stopped.finished and stopped.step == restore.step_folders(program)[-1]
  resumed = sweep_cli(tmp_path / 'killed', *args)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  for name in json.loads((tmp_path / 'reference' / 'sweep.json').read_text())['names']:
    a, b = (jaxae.load(tmp_path / run / 'members' / name) for run in ('reference', 'killed'))
    assert a.step == b.step
    assert records(tmp_path / 'reference' / 'members' / name) == records(tmp_path / 'killed' / 'members' / name)
    assert_close_trees(a.state.params, b.state.params, rtol=0, atol=0)
  changed = sweep_cli(tmp_path / 'killed', *args[:-4], '--seeds', '3', *args[-2:])
  assert changed.returncode == 2 and changed.stderr.strip().splitlines() == [
      'jaxae-sweep: error: this sweep folder holds another sweep (its sweep.json names other members or base '
      'settings); re-run it as it was, or give another --workdir']


def test_a_gan_seed_sweep_trains_in_one_program_and_its_members_evaluate_and_export(tmp_path):
  proc = sweep_cli(tmp_path / 'gan', '--model', 'gan', '--set', 'hidden=32', '--epochs', '1', '--seeds', '2')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'program 0: 2 members (00-seed=0, 01-seed=1)' in proc.stdout
  saved = report.read(tmp_path / 'gan')
  assert saved['groups'] == [[0, 1]] and [r['status'] for r in saved['rows']] == ['trained', 'trained']
  evaluated = subprocess.run([sys.executable, 'scripts/evaluate.py', str(tmp_path / 'gan'), '--suites', 'samples',
                              '--num-samples', '64', '--no-progress'], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  found = json.loads((tmp_path / 'gan' / 'evaluation' / 'results.json').read_text())
  assert sorted(found) == ['00-seed=0', '01-seed=1']
  jaxae.export(tmp_path / 'gan' / 'members' / '01-seed=1', tmp_path / 'exported')
  assert jaxae.load(tmp_path / 'exported').sample(jax.random.key(0), 4).shape == (4, 8, 8, 1)


CHILD = '''
import json, sys, jax, jaxae
from jaxae.errors import UserError
try:
  result = jaxae.sweep(json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[1], progress=False)
except UserError as e:
  print(json.dumps({'error': str(e)})); sys.exit(0)
leaf = jax.tree.leaves(result.states[0].params)[0]
print(json.dumps({'devices': jax.device_count(), 'rows': result.rows}))
'''


def test_members_spread_over_four_devices_and_train_as_on_one(tmp_path):
  """The member axis is split over 4 forced CPU devices (each device trains one member); the held-out numbers
  equal those of the same sweep on one device; 3 members over 4 devices are refused in one line."""
  env = {**os.environ, 'XLA_FLAGS': xla_flags('--xla_force_host_platform_device_count=4'), 'JAX_PLATFORMS': 'cpu'}
  members = plan.grid(seeds=2, beta=[0.5, 2.0])
  run = lambda folder, ms: json.loads(subprocess.run(
      [sys.executable, '-c', CHILD, str(folder), json.dumps(BASE), json.dumps(ms)], env=env, capture_output=True,
      text=True, timeout=300, check=True).stdout.strip().splitlines()[-1])
  four = run(tmp_path / 'four', members)
  one = jaxae.sweep(BASE, members, tmp_path / 'one', **QUIET)
  assert four['devices'] == 4
  for a, b in zip(four['rows'], one.rows, strict=True):
    np.testing.assert_allclose([a['eval'][k] for k in sorted(a['eval'])], [b['eval'][k] for k in sorted(b['eval'])],
                               rtol=1e-5)
  assert run(tmp_path / 'three', members[:3]) == {
      'error': '3 members do not split over 4 devices: give a multiple of 4 members (or max_members= one)'}


def test_a_group_that_does_not_fit_the_device_is_refused_before_training_and_max_members_splits_it(tmp_path,
                                                                                                  monkeypatch):
  """Where the device reports its capacity (GPUs, TPUs; here: told), a program larger than it is refused in one
  line naming how many members fit, before a member's folder gets a checkpoint; `max_members` splits a group
  into programs run in turn, which train as the whole group would have."""
  from jaxae.sweeps import stacked

  members = plan.grid(seeds=4)
  lines = []
  whole = jaxae.sweep(BASE, members, tmp_path / 'whole', progress=False, echo=lines.append)
  need = int(lines[-1].split('about ')[1].split(' MiB')[0].split('.')[0]) + 1
  monkeypatch.setattr(stacked, 'device_limit', lambda mesh: need * 2**20 // 2)
  refusal = r'^4 members need about .* MiB and a device has .*: give max_members=2 or fewer$'
  with pytest.raises(UserError, match=refusal):
    jaxae.sweep(BASE, members, tmp_path / 'split', **QUIET)
  assert not list((tmp_path / 'split').rglob('_CHECKPOINT_METADATA'))
  monkeypatch.undo()
  lines.clear()
  split = jaxae.sweep(BASE, members, tmp_path / 'split', max_members=2, progress=False, echo=lines.append)
  assert [line.split(':')[0] for line in lines[1:]] == ['program 0', 'program 1']
  for a, b in zip(whole.rows, split.rows, strict=True):
    assert a['eval'] == pytest.approx(b['eval'], rel=1e-5)


def test_members_whose_states_differ_in_structure_train_in_programs_of_their_own(tmp_path):
  """`ema_decay` is a float the GAN's step takes, but > 0 adds the generator's average to the state: members with
  and without it form two programs; those with it stack their decays as an array."""
  lines = []
  members = [{'ema_decay': 0.0}, {'ema_decay': 0.9}, {'ema_decay': 0.99}, {'ema_decay': 0.0, 'seed': 1}]
  result = jaxae.sweep({**BASE, 'model': 'gan', 'epochs': 1}, members, tmp_path / 's', progress=False,
                       echo=lines.append)
  assert report.read(tmp_path / 's')['groups'] == [[0, 3], [1, 2]]
  assert 'stacked hyperparameters: ema_decay' in lines[2] and [r['status'] for r in result.rows] == ['trained'] * 4
  assert 'generator_average' in result.states[1].params and 'generator_average' not in result.states[0].params
