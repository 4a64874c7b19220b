"""Strict JAX settings and shared helpers for every test."""

import os
import shutil
import tempfile

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
# The tests run tiny programs a few times each: LLVM's optimisation of the generated CPU code costs more than it
# saves (-O0 cuts compile time by about 40%; XLA's HLO passes, fusions and numerics rules run as ever).
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # on a GPU: workers and subprocesses share it
# Float32 matmuls at full float32 on every backend (on CPU they are anyway), so the tests' float32 references and
# tolerances hold on a GPU (whose default is TF32) and a TPU (bf16 passes). Runs keep matmul_precision='default'.
os.environ.setdefault('JAX_DEFAULT_MATMUL_PRECISION', 'highest')

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxae import config as config_lib  # noqa: E402
from jaxae import models  # noqa: E402
from jaxae.loop import checkpoint  # noqa: E402
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
  config = {**config_lib.resolve(tiny(model=name, **overrides)), 'input_shape': (8, 8, 1)}
  state = models.get(name).create_state(make_keys(0, 'auto').init, config, {'image': np.zeros((1, 8, 8, 1))})
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
def mnist_dir():
  if not os.path.exists(os.path.join(MNIST_DIR, 't10k-images-idx3-ubyte.gz')):
    pytest.skip('the MNIST test set is not in ../shared/data/mnist')
  return MNIST_DIR


def pytest_xdist_auto_num_workers(config) -> int:
  """Workers for `-n auto` (pyproject's addopts): one per CPU core up to 8 (each holds its own compiled
  programs), and at most 2 where the tests run on an accelerator (they share its memory and queue)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
  return min(cores, 8 if jax.default_backend() == 'cpu' else 2)


def pytest_unconfigure(config):
  """The session's caches go with it (removed by the process that made them)."""
  if not hasattr(config, 'workerinput') and os.environ.get('JAXAE_TESTS_OWN_CACHE') == str(os.getpid()):
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
  if not hasattr(config, 'workerinput') and os.environ.get('JAXAE_TESTS_OWN_JAXAE_CACHE') == str(os.getpid()):
    shutil.rmtree(os.environ['JAXAE_CACHE'], ignore_errors=True)
