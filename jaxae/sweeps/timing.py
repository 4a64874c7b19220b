"""What a sweep costs against running its members one at a time (`scripts/benchmark.py --sweep M`).

`throughput`: one epoch of M members stacked in one program (`jaxae.sweeps.stacked`) against M epochs of the
single run's compiled chunk (`jaxae.loop.compile`), one member after another, interleaved in one process on the
same data. `whole_job`: the wall-clock of `scripts/sweep.py` over M seeds against what a user does without it, a
shell loop of M `scripts/train.py` commands (M imports, M compilations, M data loads), interleaved.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import config as config_lib
from jaxae import data, models
from jaxae.loop import make_keys
from jaxae.loop.compile import compile_fns
from jaxae.loop.position import Plan
from jaxae.sweeps import stacked


def _setup(overrides: dict, members: int, images: np.ndarray):
  """The resolved config, family, plan, the members' fresh states (a list) and keys (a list)."""
  config = {**config_lib.resolve({**overrides, 'epochs': 1}), 'input_shape': tuple(images.shape[1:])}
  model = models.get(config['model'])
  keys = [make_keys(config['seed'] + i) for i in range(members)]
  sample = {'image': data.to_float(images[:1])}
  states = [models.create_state(model, k.init, config, sample) for k in keys]
  return config, model, Plan.of(config, len(images)), states, keys


def throughput(overrides: dict, members: int, images: np.ndarray, epochs: int = 3) -> dict:
  """Median seconds of an epoch of `members` stacked and of `members` single epochs in turn (after a warm-up
  epoch each, interleaved), and their ratio: how many times the examples per second of sequential runs."""
  config, model, plan, states, keys = _setup(overrides, members, images)
  train = {'image': jnp.asarray(images), 'label': jnp.full(len(images), -1, jnp.int32)}
  single = compile_fns(model, config, len(images)).chunk
  program = stacked.compile_group(model, config, [], plan, data_per_member=False)
  stacked_state, stacked_keys = stacked.stack(states), stacked.stack(keys)
  alive = jnp.ones(members, jnp.float32)
  singles = [jax.tree.map(jnp.copy, s) for s in states]
  stacked_s, sequential_s = [], []
  for epoch in range(1, epochs + 2):
    t0 = time.perf_counter()
    stacked_state, _, sums = program.fast(stacked_state, alive, train, epoch, 0, stacked_keys, {})
    jax.block_until_ready(sums)
    stacked_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(members):
      singles[i], _, sums = single(singles[i], train, epoch, 0, keys[i])
    jax.block_until_ready(sums)
    sequential_s.append(time.perf_counter() - t0)
  s, q = statistics.median(stacked_s[1:]), statistics.median(sequential_s[1:])
  return {'members': members, 'stacked_epoch_s': s, 'sequential_epoch_s': q, 'throughput_ratio': q / s,
          'examples_per_s': members * len(images) / s, 'stacked_epoch_s_all': stacked_s[1:],
          'sequential_epoch_s_all': sequential_s[1:], 'steps_per_epoch': plan.steps_per_epoch}


def whole_job(args: list[str], members: int, folder: Path, rounds: int = 1) -> dict:
  """Wall-clock seconds of `scripts/sweep.py ARGS --seeds M` and of a loop of M `scripts/train.py ARGS --seed i`
  (each a fresh process, as a shell loop runs them), interleaved `rounds` times; medians and their ratio."""
  root = Path(__file__).resolve().parents[2]
  run = lambda *cmd: subprocess.run([sys.executable, *cmd, '--no-progress'], cwd=root, check=True,
                                    capture_output=True, text=True)
  sweep_s, loop_s = [], []
  for r in range(rounds):
    t0 = time.perf_counter()
    run('scripts/sweep.py', *args, '--seeds', str(members), '--workdir', str(folder / f'sweep{r}'))
    sweep_s.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(members):
      run('scripts/train.py', *args, '--seed', str(i), '--workdir', str(folder / f'loop{r}' / str(i)))
    loop_s.append(time.perf_counter() - t0)
  s, q = statistics.median(sweep_s), statistics.median(loop_s)
  return {'members': members, 'command': ' '.join(args), 'sweep_s': s, 'loop_s': q, 'speedup': q / s,
          'sweep_s_all': sweep_s, 'loop_s_all': loop_s}
