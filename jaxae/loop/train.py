"""The one training loop for every family: `train_and_evaluate(config, workdir)`::

    config -> data (`jaxae.data.prepare`), keys (`loop.keys`), state (`family.create_state`)
           -> compiled chunk and evaluation (`loop.compile`: the only reader of the config that jits)
           -> per chunk: one compiled call of `loop.step` scanned over its batches (`loop.scan`),
              one host sync for its metric sums and guard, a checkpoint (`loop.checkpoint`)
           -> per epoch: `metrics.jsonl` records; at the end, `figures/` (`loop.workdir`)

The dataset is placed on the device once when it fits (else streamed from the
host, `data_mode`); each epoch, or each chunk of `checkpoint_every` steps, is
one compiled call. Checkpoints are written in the background (orbax async) every
`checkpoint_epochs` epochs or `checkpoint_minutes`; evaluation every `eval_every` epochs.
"""

import contextlib
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxae import conditioning, cpu, data, models
from jaxae import config as config_lib
from jaxae.errors import UserError, require
from jaxae.loop import checkpoint, formats, lock, logs, parallel
from jaxae.loop import workdir as workdir_lib
from jaxae.loop.compile import Compiled, compile_fns
from jaxae.loop.compile import matmul_precision as _matmul_precision  # the old name: `__getattr__`
from jaxae.loop.keys import Keys, impl_name, make_keys
from jaxae.loop.position import Plan
from jaxae.loop.step import check as check_guard


def __getattr__(name: str):
  if name == 'matmul_precision':  # moved in 0.2.0; the old name warns for one release
    warnings.warn('jaxae.loop.train.matmul_precision moved to jaxae.loop.compile.matmul_precision',
                  DeprecationWarning, stacklevel=2)
    return _matmul_precision
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


STOP = threading.Event()  # set by the CLI's first Ctrl-C: the loop stops after the chunk it is in, once saved


class Result(NamedTuple):
  state: Any
  config: dict
  records: list


class Run(NamedTuple):
  """Everything `train_and_evaluate` sets up before its loop."""

  config: dict
  model: Any
  splits: data.Splits
  keys: Keys
  mesh: Any
  train_data: dict  # {'image', 'label'(, a classifier's labelled partners)}: on the device, or host / disk
  eval_data: dict  # {'image', 'label'} on the device
  fns: Compiled
  plan: Plan  # epochs, chunks and steps
  initial: Callable  # () -> the fresh state, replicated
  resident: bool  # the training data on the device (else streamed from the host or disk)


def setup(overrides: dict, workdir: Path, sets: dict | None = None) -> tuple[Run, Any]:
  """Validates everything that can be without reading checkpoints; returns the run and its fresh, replicated
  state. Writes nothing."""
  if sets is not None:
    require(overrides.get('dataset', 'arrays') == 'arrays', f"data= is given, so the dataset is your arrays; "
            f"drop dataset={overrides.get('dataset')!r} from the config")
    overrides = {**overrides, 'dataset': 'arrays'}
  config = config_lib.resolve(overrides)
  if config['data_dir'] and Path(config['data_dir']).exists():  # saved absolute: the run loads from any folder
    config['data_dir'] = str(Path(config['data_dir']).resolve())
  model = models.get(config['model'])
  splits = data.prepare(config, sets, compact=True)  # uint8 images stay uint8, on the device too
  if models.can(model, 'conditional'):
    conditioning.check_data(splits, config['num_classes'])
  if models.can(model, 'classify'):
    conditioning.check_partly_labelled(splits, config['num_classes'], config['model'])
  train_x, eval_x = splits.train['image'], splits.eval['image']
  plan = Plan.of(config, len(train_x))
  config = {**workdir_lib.resolve_schedule(config, plan.steps_per_epoch), 'input_shape': tuple(train_x.shape[1:]),
            'data_fingerprint': data.fingerprint(splits)}
  config = {**config, 'kernels': cpu.resolve(config['kernels']), 'format_version': formats.RUN_FORMAT}
  sample = {'image': data.to_float(train_x[:1])}
  state = _template(model, config, sample)  # the model's own checks, before the workdir's
  saved = workdir_lib.saved_run(workdir, lambda: splits)  # the run already there, in this format (None: new)
  if (impl := _prng_impl(config, saved)) != impl_name(config['prng_impl']):  # a resume, begun with another
    state = _template(model, {**config, 'prng_impl': impl}, sample)
  config = {**config, 'prng_impl': impl}
  keys = make_keys(config['seed'], impl)
  workdir_lib.check_workdir(workdir, config, saved)
  workdir_lib.check_trained_steps(workdir, config, plan.steps_per_epoch)
  mesh = parallel.make_mesh(config['devices'])
  for key in ('batch_size', 'eval_batch_size'):
    parallel.check_batch_size(key, config[key], mesh)
  resident = config['data_mode'] == 'resident' or (  # records on disk stream unless resident is asked for
      config['data_mode'] == 'auto' and not data.is_lazy(train_x) and parallel.fits_on_device(train_x.nbytes))
  train_data = {'image': train_x, 'label': np.asarray(splits.train['label'], np.int32),
                **(data.labelled_partners(splits.train, config['seed']) if models.can(model, 'classify') else {})}
  if resident:
    train_data = parallel.replicate({**train_data, 'image': np.asarray(train_x) if data.is_lazy(train_x) else
                                     train_x}, mesh)
  eval_data = parallel.replicate({'image': np.asarray(eval_x), 'label': np.asarray(splits.eval['label'], np.int32)},
                                 mesh)  # evaluation sets are small: resident in both modes
  fns = compile_fns(model, config, len(train_x), mesh, resident)
  initial = lambda: parallel.replicate(models.create_state(model, keys.init, config, sample), mesh)
  run = Run(config, model, splits, parallel.replicate(keys, mesh), mesh, train_data, eval_data, fns, plan,
            initial, resident)
  return run, parallel.replicate(state, mesh)


def _prng_impl(config: dict, saved: dict | None) -> str:
  """The PRNG implementation of a run, chosen once and recorded in its config.json: 'auto' resolved for a new
  run, and for a resume the one it began with (`saved`, its config in this format), so that a run resumed on
  another backend, or with another `jax_default_prng_impl`, draws what it would have drawn. (The kernels are
  chosen for each start: `jaxae.cpu.resolve`.)"""
  impl = config['prng_impl']
  if impl == 'auto' and saved is not None:
    impl = saved['prng_impl']
  return impl_name(impl)


def _template(model, config: dict, sample: dict):
  """The family's fresh state (`models.create_state`, with the config's own keys); a bad config is a `UserError`."""
  try:
    return models.create_state(model, make_keys(config['seed'], config['prng_impl']).init, config, sample)
  except ValueError as e:
    raise UserError(f'{e}') from None


def train_and_evaluate(overrides: dict, workdir: str | Path, progress: bool = True, data: dict | None = None
                       ) -> Result:
  """Trains `config['model']` on `config['dataset']`, or on `data`, resuming from `workdir` if it holds a run.

  `data`: your own images, `jaxae.data.from_arrays(train_images, train_labels, test_images, test_labels)`
  or `{'train': jaxae.data.from_source(source), 'test': ...}`; the config's dataset is then 'arrays'
  (pass the same data again to resume, or to `jaxae.load`).

  Writes `config.json`, `metrics.jsonl`, `checkpoints/` and `figures/` in `workdir` (process 0 writes the files;
  every process runs the same loop). Every input is validated before anything is written.

  Raises:
    UserError: bad config, data or workdir; or a non-finite loss (the last
      good checkpoint is kept).
  """
  workdir = workdir_lib.check_workdir_path(workdir)
  run, state = setup(overrides, workdir, data)
  try:
    with _matmul_precision(run.config['matmul_precision']):
      return _train_in(run, state, workdir, progress)
  except OSError as e:
    raise workdir_lib.write_failed(e, workdir) from None


def _train_in(run: Run, state, workdir: Path, progress: bool) -> Result:
  """`train_and_evaluate` once set up: the lock, the checkpointer, the loop, the figures."""
  workdir.mkdir(parents=True, exist_ok=True)
  with lock.held(workdir) if parallel.is_primary() else contextlib.nullcontext():
    with checkpoint.Checkpointer(workdir / 'checkpoints', run.config['keep_checkpoints']) as ckpt:
      state, log = _train(run, state, ckpt, workdir, progress)
    figures = workdir_lib.write_figures(run.model, state, run.splits.eval, run.keys, run.config, workdir,
                                        log.records, run.mesh)
    log.figures(int(state.step), {name: workdir / 'figures' / f'{name}.png' for name in figures})
  return Result(state, run.config, log.records)


def _rerun_exact(run: Run, ckpt: checkpoint.Checkpointer, position: int):
  """A fast chunk met a non-finite value: the chunks since the last save again, from it (they were finite), then
  chunk `position` exact, whose guard names the first bad step and term. Returns `(state, guard, sums)`."""
  fns, plan = run.fns, run.plan
  state, saved = ckpt.restore(run.initial())
  for p in range(plan.position_of(saved, state.step), position):
    state = fns.chunk(state, run.train_data, *plan.locate(p), run.keys)[0]
  return fns.exact(state, run.train_data, *plan.locate(position), run.keys)


def _run_chunk(run: Run, ckpt: checkpoint.Checkpointer, state, position: int, last_saved: int):
  """Chunk `position` of the run: `(state, its metric sums on the host)`, one host sync; a non-finite value
  stops the run with the first bad step and term named (or skips, `nonfinite=skip`)."""
  fns, epoch = run.fns, run.plan.locate(position)[0]
  state, guard, sums = fns.chunk(state, run.train_data, *run.plan.locate(position), run.keys)
  if fns.fast and not bool(fns.finite(guard, state)):  # stop mode: rerun exact, to name the first bad step
    state, guard, sums = _rerun_exact(run, ckpt, position)
  guard, sums = jax.device_get((guard, sums))  # the one host sync per chunk; the state stays on the device
  check_guard(guard, [k for k in sums if k != 'count'], float(sums['count']), epoch, run.config['nonfinite'],
              last_saved=last_saved or None)
  return state, {**sums, 'skipped_steps': np.float32(guard.skipped)}


def _end_epoch(run: Run, log: logs.RunLog, state, epoch: int, sums: dict, seconds: float) -> dict:
  """The epoch's records (training; held-out when due): `{'train loss': '...', ...}` for the progress bar."""
  n_train, config = len(run.splits.train['image']), run.config
  train = log.epoch(epoch, int(state.step), 'train', sums, seconds=seconds, examples_per_sec=n_train / seconds,
                    skipped_steps=int(sums['skipped_steps']))
  shown = {f'train {k}': f'{train[k]:.3f}' for k in run.model.HEADLINE}
  if epoch % config['eval_every'] == 0 or epoch == config['epochs']:
    test = log.epoch(epoch, int(state.step), 'eval', _evaluate(run, state))
    shown.update({f'eval {k}': f'{test[k]:.3f}' for k in run.model.HEADLINE})
  return shown


def _evaluate(run: Run, state) -> dict:
  return jax.device_get(run.fns.evaluate(state, run.eval_data, run.keys.eval))


def _train(run: Run, state, ckpt: checkpoint.Checkpointer, workdir: Path, progress: bool):
  """Resumes from `ckpt` and trains to the run's last epoch; returns `(state, its RunLog)`."""
  plan, primary = run.plan, parallel.is_primary()
  state, done = ckpt.restore(state)
  position = plan.position_of(done, state.step)
  sums = ckpt.restore_loop(done) if not plan.ends_epoch(position) else None  # mid-epoch: the epoch's sums so far
  policy = checkpoint.SavePolicy(run.config, plan, done, config_due=primary and position > 0)
  if primary and position == 0:
    checkpoint.write_config(workdir, run.config)
  log = logs.RunLog(workdir, run.config, run.mesh, done, position // plan.chunks_per_epoch if position else -1)
  if position == 0:
    log.epoch(0, int(state.step), 'eval', _evaluate(run, state))
  seconds = 0.0
  with tqdm(total=plan.total_steps, initial=done, disable=not (progress and primary), unit='step',
            desc=run.config['model']) as bar:
    while position < plan.total_chunks:
      epoch, start = plan.locate(position)
      t0 = time.perf_counter()
      state, chunk_sums = _run_chunk(run, ckpt, state, position, policy.saved)
      seconds = (0.0 if start == 0 else seconds) + time.perf_counter() - t0
      sums = chunk_sums if start == 0 or sums is None else {k: np.float32(sums[k]) + v for k, v in chunk_sums.items()}
      position += 1
      if plan.ends_epoch(position):
        bar.set_postfix(_end_epoch(run, log, state, epoch, sums, seconds))
      if policy.due(position, STOP.is_set()):  # in the background, once on the host
        policy.save(ckpt, plan.steps_done(position), state, sums)
      bar.update(plan.steps_done(position) - bar.n)
      if STOP.is_set():  # Ctrl-C in the CLI: stop on a saved chunk boundary
        raise KeyboardInterrupt
  return state, log
