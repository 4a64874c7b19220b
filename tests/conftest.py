"""Strict JAX settings and shared helpers for every test."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault('TFDS_DATA_DIR', '/nonexistent-tfds-dir')  # never touch a real TFDS cache
# One persistent XLA compilation cache for the whole session: set before JAX is imported, in the environment, so
# the xdist workers and every subprocess a test starts (CLI, soak, multi-process runs) share it. Most of the
# suite's time is compiling the same small programs again in each of them.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='jaxae-tests-xla-cache-')
  os.environ['JAXAE_TESTS_OWN_CACHE'] = str(os.getpid())  # a pytest this session starts must not remove it
if 'JAXAE_CACHE' not in os.environ:  # the samples suite's classifiers: once per dataset in the session, never in ~
  os.environ['JAXAE_CACHE'] = tempfile.mkdtemp(prefix='jaxae-tests-cache-')
  os.environ['JAXAE_TESTS_OWN_JAXAE_CACHE'] = str(os.getpid())
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
# The tests run tiny programs a few times each, and compiling them is most of the suite's time: LLVM's optimisation
# of the generated CPU code costs more than it saves (-O0 cuts compile time by about 40%), and XLA CPU's elemental
# emitters compile in half the time of its newer fusion emitters (a DCGAN train step at -O0: 0.62 s against
# 1.34 s). XLA's HLO passes and fusions run as ever, but the elemental emitters round some fused ops differently in
# programs of other shapes, so the tests of bitwise equality across programs (marked `default_codegen`) run in a
# process of their own with XLA's default emitters, as users' runs have (`pytest_pyfunc_call` below).
FAST_CODEGEN = '--xla_cpu_use_fusion_emitters=false'
for flag in ('--xla_backend_optimization_level=0', FAST_CODEGEN):
  if flag.split('=')[0] not in os.environ.get('XLA_FLAGS', '') and not (
      flag == FAST_CODEGEN and os.environ.get('JAXAE_TESTS_CODEGEN') == 'default'):
    os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()

os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # on a GPU: workers and subprocesses share it
# Float32 matmuls at full float32 on every backend (on CPU they are anyway), so the tests' float32 references and
# tolerances hold on a GPU (whose default is TF32) and a TPU (bf16 passes). Runs keep matmul_precision='default'.
os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxae import config as config_lib  # noqa: E402
from jaxae import models  # noqa: E402
from jaxae.loop import checkpoint, formats  # noqa: E402
from jaxae.loop.keys import make_keys  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')

MNIST_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'mnist')


def tiny(**overrides) -> dict:
  """A small config that trains in seconds on digits."""
  return {'model': 'vae', 'hidden': (64, 32), 'latent_dim': 8, 'conv_features': (8, 16),
          'epochs': 2, 'batch_size': 64, **overrides}


def saved_run(workdir, name: str, **overrides):
  """A workdir holding one checkpoint of `name` whose every weight (and batch statistic) was moved away from its
  initial value, so a load that re-initialised anything would not match. Returns `(config, state)`."""
  config = {**config_lib.resolve(tiny(model=name, **overrides)), 'input_shape': (8, 8, 1),
            'format_version': formats.RUN_FORMAT}  # as this jaxae writes a run
  state = models.create_state(models.get(name), make_keys(0, 'auto').init, config, {'image': np.zeros((1, 8, 8, 1))})
  moved = lambda tree, seed: jax.tree.map(lambda a, k: a + jax.random.normal(k, a.shape, a.dtype) * 0.1, tree,
                                          jax.tree.unflatten(jax.tree.structure(tree), list(jax.random.split(
                                              jax.random.key(seed), len(jax.tree.leaves(tree))))))
  state = state.replace(params=moved(state.params, 1), batch_stats=moved(state.batch_stats, 2),
                        step=np.int32(7))
  workdir.mkdir(parents=True)
  checkpoint.write_config(workdir, config)
  with checkpoint.Checkpointer(workdir / 'checkpoints', 1) as ckpt:
    ckpt.save(7, state, {})
  return config, state


@pytest.fixture
def small_disk(tmp_path):
  """`mount(size, read_only=False) -> Path`: a tmpfs of `size` bytes mounted under `tmp_path` (unmounted after the
  test), a real filesystem that fills up or refuses writes. Skips where this process may not mount (not root,
  or no mount namespace permission)."""
  mounted = []

  def mount(size: int, read_only: bool = False) -> Path:
    point = tmp_path / f'disk{len(mounted)}'
    point.mkdir()
    options = f'size={size}' + (',ro' if read_only else '')
    if shutil.which('mount') is None:
      pytest.skip('no mount command here to make a small filesystem')
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(point)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
      pytest.skip(f'cannot mount a small tmpfs here to fill: {proc.stderr.strip() or proc.returncode}')
    mounted.append(point)
    return point

  yield mount
  for point in mounted:
    subprocess.run(['umount', '-l', str(point)], capture_output=True)


def fill(folder: Path, leave: int) -> None:
  """Fills the filesystem of `folder` until `leave` bytes are free (a file `filler` in `folder`)."""
  free = shutil.disk_usage(folder).free
  with open(folder / 'filler', 'wb') as f:
    f.write(b'\0' * max(free - leave, 0))


@pytest.fixture
def mnist_dir():
  if not os.path.exists(os.path.join(MNIST_DIR, 't10k-images-idx3-ubyte.gz')):
    pytest.skip('the MNIST test set is not in ../shared/data/mnist')
  return MNIST_DIR


def pytest_xdist_auto_num_workers(config) -> int:
  """Workers for `-n auto` (pyproject's addopts): one per CPU core up to 8 (each holds its own compiled
  programs), and at most 2 where the tests run on an accelerator (they share its memory and queue)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
  return min(cores, 8 if jax.default_backend() == 'cpu' else 2)


def pytest_configure(config):
  config.addinivalue_line('markers', 'default_codegen: checks bitwise equality across differently shaped programs; '
                                     "runs with XLA's default CPU emitters")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """A `default_codegen` test, in a process compiling with `FAST_CODEGEN`, runs in a pytest of its own without it."""
  if pyfuncitem.get_closest_marker('default_codegen') is None or FAST_CODEGEN not in os.environ.get('XLA_FLAGS', ''):
    return None
  env = {**os.environ, 'XLA_FLAGS': os.environ['XLA_FLAGS'].replace(FAST_CODEGEN, '').strip(),
         'JAXAE_TESTS_CODEGEN': 'default'}
  proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p', 'no:cacheprovider', pyfuncitem.nodeid],
                        cwd=pyfuncitem.config.rootpath, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
  return True


def pytest_unconfigure(config):
  """The session's caches go with it (removed by the process that made them)."""
  if not hasattr(config, 'workerinput') and os.environ.get('JAXAE_TESTS_OWN_CACHE') == str(os.getpid()):
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
  if not hasattr(config, 'workerinput') and os.environ.get('JAXAE_TESTS_OWN_JAXAE_CACHE') == str(os.getpid()):
    shutil.rmtree(os.environ['JAXAE_CACHE'], ignore_errors=True)
