"""Data parallelism: 4 forced CPU devices, in one process or two, give the 1-device loss trajectory.

Every comparison is on one backend, the CPU: the 1-device baselines run in this process on a CPU machine, and in
a CPU child process where the tests run on an accelerator (JAX_PLATFORMS=cuda)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny

import jaxae
from jaxae import metrics
from jaxae.errors import UserError
from jaxae.loop import parallel, restore, tensorboard, train
from jaxae.runs import load

ROOT = Path(__file__).resolve().parents[1]

CHILD = '''
import json, sys, jax
from jaxae.loop import train
from jaxae.errors import UserError
overrides = json.loads(sys.argv[2])
compiled = []
def recording(*args, **kwargs):
  fns = train_compile_fns(*args, **kwargs)
  compiled.extend([fns.chunk, fns.evaluate])
  return fns
train_compile_fns, train.compile_fns = train.compile_fns, recording
try:
  result = train.train_and_evaluate(overrides, sys.argv[1], progress=False)
except UserError as e:
  print(json.dumps({'error': str(e)}))
  sys.exit(0)
leaf = jax.tree.leaves(result.state.params)[0]
print(json.dumps({'devices': jax.device_count(), 'param_devices': len(leaf.sharding.device_set),
                  'records': result.records, 'compilations': [f._cache_size() for f in compiled]}))
'''


def xla_flags(flag: str) -> str:
  """The session's XLA flags (conftest's) and `flag`."""
  return f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def run_on_cpu_devices(workdir, overrides, devices=4):
  env = {**os.environ, 'XLA_FLAGS': xla_flags(f'--xla_force_host_platform_device_count={devices}'),
         'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-c', CHILD, str(workdir), json.dumps(overrides)], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def one_cpu_device(workdir, overrides) -> list[dict]:
  """The 1-device baseline's metric records, trained (or resumed) in `workdir` on one CPU device."""
  if jax.default_backend() == 'cpu':
    return train.train_and_evaluate(overrides, workdir, progress=False).records
  return run_on_cpu_devices(workdir, overrides, devices=1)['records']


def last_params(workdir, collection='params'):
  return restore.read(workdir / 'checkpoints')[collection]


def test_four_devices_match_one_device_and_compile_once_also_on_resume(tmp_path, name='vae'):
  """The VAE also checks sharded z draws. The resumed run starts from restored (not freshly built) arrays
  and a partial last chunk (checkpoint_every=2 of 3 batches), and still compiles each pass once."""
  overrides = tiny(model=name, epochs=2, batch_size=64, eval_batch_size=60, checkpoint_every=2, holdout=0.9)
  four = run_on_cpu_devices(tmp_path / 'four', overrides)
  assert four['devices'] == 4 and four['param_devices'] == 4  # params replicated on all 4
  resumed = run_on_cpu_devices(tmp_path / 'four', {**overrides, 'epochs': 4})
  assert four['compilations'] == resumed['compilations'] == [1, 1]  # the chunk and the eval function
  one = one_cpu_device(tmp_path / 'one', {**overrides, 'epochs': 4})
  assert [(r['epoch'], r['split'], r['step']) for r in resumed['records']] == [(r['epoch'], r['split'], r['step'])
                                                                                for r in one]
  np.testing.assert_allclose([r['loss'] for r in resumed['records']], [r['loss'] for r in one], rtol=2e-5)


def test_batch_norm_over_four_devices_normalises_by_the_whole_batch_as_one_device_does(tmp_path):
  """DCGAN's batch norm, the batch sharded over 4 devices: the same losses and running averages as 1 device."""
  overrides = tiny(model='dcgan', epochs=2, batch_size=64, holdout=0.8)
  four = run_on_cpu_devices(tmp_path / 'four', overrides)
  one = one_cpu_device(tmp_path / 'one', overrides)
  for key in ('d_loss', 'g_loss'):
    np.testing.assert_allclose([r[key] for r in four['records']], [r[key] for r in one], rtol=2e-5)
  stats = [last_params(tmp_path / run, 'batch_stats') for run in ('four', 'one')]
  assert jax.tree.structure(stats[0]) == jax.tree.structure(stats[1]) and len(jax.tree.leaves(stats[0])) == 6
  for a, b in zip(*map(jax.tree.leaves, stats), strict=True):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  exported = jaxae.load(jaxae.export(tmp_path / 'four', tmp_path / 'exported'))  # trained on 4, loaded on 1
  trained = load(tmp_path / 'four')
  for a, b in zip(jax.tree.leaves((exported.state.params, exported.state.batch_stats)),
                  jax.tree.leaves((trained.state.params, trained.state.batch_stats)), strict=True):
    assert np.array_equal(a, b) and len(a.sharding.device_set) == 1
  assert np.array_equal(exported.sample(jax.random.key(1), 3), trained.sample(jax.random.key(1), 3))


def test_a_batch_size_that_does_not_split_over_the_devices_is_refused(tmp_path):
  out = run_on_cpu_devices(tmp_path, tiny(batch_size=30))
  assert 'batch_size 30 does not split over 4 devices' in out['error']
  assert not (tmp_path / 'config.json').exists()
  two = run_on_cpu_devices(tmp_path / 'two', tiny(batch_size=30, devices=2, epochs=1))  # splits over 2 of the 4
  assert two['devices'] == 4 and two['param_devices'] == 2 and two['records'][-1]['epoch'] == 1


def test_the_mesh_takes_the_devices_asked_for_in_process_order(tmp_path):
  assert parallel.make_mesh(1).devices.tolist() == [jax.devices()[0]]
  with pytest.raises(UserError, match=f'devices=9 but this run has {jax.device_count()}; use at most that'):
    train.train_and_evaluate(tiny(devices=9), tmp_path, progress=False)
  assert not tmp_path.exists() or not any(tmp_path.iterdir())


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def cli_args(overrides: dict) -> list[str]:
  args = ['--model', overrides['model']]
  for key, value in overrides.items():
    if key != 'model':
      args += ['--set', f"{key}={','.join(map(str, value)) if isinstance(value, tuple) else value}"]
  return args


def run_two_processes(workdir, overrides, script=ROOT / 'scripts' / 'train.py'):
  """`script` (default `scripts/train.py`) as 2 processes with 2 CPU devices each (4 in all), joined through
  --coordinator."""
  env = {**os.environ, 'XLA_FLAGS': xla_flags('--xla_force_host_platform_device_count=2'), 'JAX_PLATFORMS': 'cpu'}
  port = free_port()
  logs = [(workdir.parent / f'{workdir.name}.{rank}.out', workdir.parent / f'{workdir.name}.{rank}.err')
          for rank in (0, 1)]
  procs = []
  for rank, (out, err) in enumerate(logs):  # output to files: undrained pipes could fill up and block
    with out.open('w') as stdout, err.open('w') as stderr:
      procs.append(subprocess.Popen([sys.executable, str(script), '--workdir', str(workdir),
                                     '--no-progress', '--coordinator', f'localhost:{port}', '--num-processes', '2',
                                     '--process-id', str(rank), *cli_args(overrides)],
                                    env=env, stdout=stdout, stderr=stderr))
  deadline = time.monotonic() + 300
  while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
    if any(p.poll() not in (None, 0) for p in procs):
      break  # one failed: the other would wait for it until JAX's own timeout
    time.sleep(0.2)
  for p in procs:
    if p.poll() is None:
      p.kill()
  for p, (_, err) in zip(procs, logs, strict=True):
    assert p.wait() == 0, err.read_text()[-3000:]
  return [out.read_text() for out, _ in logs]


def test_two_processes_match_one_device_and_resume_also_in_the_other_data_mode(tmp_path):
  """Multi-host: 2 processes x 2 devices follow the 1-device trajectory; process 0 alone writes the files;
  a second 2-process launch resumes, streaming, from the checkpoint both wrote resident, and one device resumes
  it too. (Streaming from scratch on 2 processes: the records test below.)"""
  overrides = tiny(model='vae', epochs=2, batch_size=64, eval_batch_size=60, data_mode='resident')
  outs = run_two_processes(tmp_path / 'two', overrides)
  assert 'outputs in' in outs[0] and 'outputs in' not in outs[1]  # only process 0 reports
  run_two_processes(tmp_path / 'two', {**overrides, 'epochs': 3, 'data_mode': 'streaming'})
  one = one_cpu_device(tmp_path / 'one', {**overrides, 'epochs': 3})
  two = metrics.read(tmp_path / 'two' / 'metrics.jsonl')
  assert [(r['epoch'], r['split'], r['step']) for r in two] == [(r['epoch'], r['split'], r['step']) for r in one]
  np.testing.assert_allclose([r['loss'] for r in two], [r['loss'] for r in one], rtol=2e-5)
  events = lambda run: {tag: [s for s, _ in v] for tag, v in tensorboard.scalars(tmp_path / run).items()}
  assert events('two') == events('one')  # process 0 alone wrote them, each step once across the two launches
  params, one_params = last_params(tmp_path / 'two'), last_params(tmp_path / 'one')
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(one_params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert sorted(p.name for p in (tmp_path / 'two' / 'figures').iterdir()) == ['loss.png', 'reconstructions.png',
                                                                               'samples.png']
  resumed = one_cpu_device(tmp_path / 'two', {**overrides, 'epochs': 4})
  one = one_cpu_device(tmp_path / 'one', {**overrides, 'epochs': 4})
  assert [(r['epoch'], r['step']) for r in resumed] == [(r['epoch'], r['step']) for r in one]
  np.testing.assert_allclose([r['loss'] for r in resumed], [r['loss'] for r in one], rtol=2e-5)


COUNTING_TRAIN = """
import atexit, sys, threading
import numpy as np
from jaxae import cli
from jaxae.data import records

counts, lock, read = np.zeros({n}, np.int64), threading.Lock(), records.Images.__getitem__
def counted(self, i):
  if self.path.endswith('train.array_record') and isinstance(i, np.ndarray):  # the loader's reads
    with lock:
      np.add.at(counts, self.index[i] if self.index is not None else i, 1)
  return read(self, i)
records.Images.__getitem__ = counted
rank = sys.argv[sys.argv.index('--process-id') + 1]
atexit.register(lambda: np.save(f'{{sys.argv[sys.argv.index("--workdir") + 1]}}.reads.{{rank}}.npy', counts))
sys.exit(cli.main(sys.argv[1:]))
"""


def test_two_processes_each_stream_only_their_half_of_every_batch_from_records(tmp_path):
  """Per-process sharding of the input: with records on disk, each of 2 processes (2 devices each) reads only
  the rows of its own devices, half of each batch; together they read every example once an epoch, and
  train as one device does."""
  from jaxae import data
  from jaxae.data import records

  digits = data.load_digits()['train']
  pixels = (digits['image'] * 255).astype(np.uint8)
  records.write(tmp_path / 'rec', 'train', [(pixels[:1500], digits['label'][:1500])])
  records.write(tmp_path / 'rec', 'test', [(pixels[1500:], digits['label'][1500:])])
  script = tmp_path / 'counting_train.py'
  script.write_text(COUNTING_TRAIN.format(n=1500))
  overrides = tiny(model='vae', epochs=2, batch_size=64, eval_batch_size=60, dataset='records',
                   data_dir=str(tmp_path / 'rec'), stream_steps=4)
  run_two_processes(tmp_path / 'two', overrides, script)
  reads = [np.load(tmp_path / f'two.reads.{rank}.npy') for rank in (0, 1)]
  # rows 0-31 of each batch on process 0, 32-63 on process 1; the last batch (28 of 1,500 = 23 x 64 + 28) is
  # process 0's alone: 2 epochs x (23 x 32 + 28) and 2 x 23 x 32 reads
  assert [int(r.sum()) for r in reads] == [2 * (23 * 32 + 28), 2 * 23 * 32]
  assert (reads[0] + reads[1] == 2).all()  # every example once an epoch, by one process or the other
  one = one_cpu_device(tmp_path / 'one', overrides)
  two = metrics.read(tmp_path / 'two' / 'metrics.jsonl')
  assert [(r['epoch'], r['split'], r['step']) for r in two] == [(r['epoch'], r['split'], r['step']) for r in one]
  np.testing.assert_allclose([r['loss'] for r in two], [r['loss'] for r in one], rtol=2e-5)
