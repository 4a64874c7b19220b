"""The one training loop for every family: `train_and_evaluate(config, workdir)`.

The dataset is placed on the device once when it fits (else streamed from the
host, `data_mode`); each epoch, or each chunk of `checkpoint_every` steps, is
one compiled call (`jaxae.epochs`), with one host sync per chunk for its metric
sums and non-finite guard. Randomness: one seed is split into named keys; step
`t` draws from `fold_in(keys.step, t)`, epoch `e` is shuffled with
`fold_in(keys.shuffle, e)`, so a resumed run draws exactly what an
uninterrupted one would.
"""

import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxae import checkpoint, data, guard, metrics, models, parallel, plotting, steps
from jaxae import config as config_lib
from jaxae.epochs import Keys, chunk_size, compile_fns, make_keys, zero_sums
from jaxae.errors import UserError, require

STOP = threading.Event()  # set by the CLI's first Ctrl-C: the loop stops after the chunk it is in, once saved
RESUMABLE_CHANGES = ('epochs', 'num_figure_images', 'keep_checkpoints', 'data_dir', 'nonfinite', 'data_mode',
                     'stream_steps', 'read_threads')  # none changes what is computed


def check_workdir(workdir: Path, config: dict) -> None:
  """`UserError` if `workdir` holds a run whose config differs in more than RESUMABLE_CHANGES.

  `config` has `decay_steps` resolved, so raising `epochs` under a decaying
  schedule (which would stretch it mid-run) is refused with its own line.
  """
  saved = checkpoint.read_config(workdir)
  if saved is None:
    return
  diff = sorted((k for k in set(saved) | set(config)
                 if k not in RESUMABLE_CHANGES and saved.get(k) != config.get(k)), key=lambda k: (k != 'model', k))
  if diff == ['decay_steps']:
    raise UserError(f"{workdir} holds a run whose {config['schedule']} schedule decays over {saved['decay_steps']} "
                    f"steps; {config['epochs']} epochs would make it {config['decay_steps']} mid-run: add "
                    f"--set decay_steps={saved['decay_steps']} to keep the schedule, or use a new workdir")
  if diff:
    what = ', '.join(f'{k}: {saved.get(k)!r} there, {config.get(k)!r} now' for k in diff[:3])
    more = f' and {len(diff) - 3} more' if len(diff) > 3 else ''
    raise UserError(f'{workdir} holds a run with another config ({len(diff)} setting(s) differ: {what}{more}); '
                    'use a new workdir or the same settings')


def check_workdir_path(workdir: Path) -> None:
  """`UserError` if `workdir`, or the nearest of its parents that exists, is not a folder."""
  for p in (workdir, *workdir.parents):
    if p.exists():
      require(p.is_dir(), f'--workdir {workdir}: {p} is a file, not a folder; give a folder path')
      return


def check_trained_steps(workdir: Path, config: dict, steps_per_epoch: int) -> None:
  """`UserError` if `workdir`'s newest checkpoint is past `epochs` (a lower --epochs than the run has)."""
  done = checkpoint.latest_step(workdir / 'checkpoints')
  total = config['epochs'] * steps_per_epoch
  if done is not None and done > total:
    raise UserError(f'{workdir} holds a run trained for {done} steps ({done / steps_per_epoch:g} epochs); --epochs '
                    f"{config['epochs']} ({total} steps) is fewer: raise --epochs to continue it, or evaluate it as "
                    f'it is with scripts/evaluate.py {workdir}')


def resolve_schedule(config: dict, steps_per_epoch: int) -> dict:
  """`config` with `decay_steps` = 0 (the whole run) resolved to `epochs * steps_per_epoch` for a decaying
  schedule; it is saved so a resumed run follows the schedule it started with."""
  if config['schedule'] == 'constant' or config['decay_steps']:
    return config
  return {**config, 'decay_steps': config['epochs'] * steps_per_epoch}


def write_figures(model, state, eval_set, keys: Keys, config, workdir: Path, records, mesh=None) -> None:
  """figures/: one PNG per grid `model.eval_images` returns (reconstructions under their originals), the
  headline metrics per epoch, and for 2-D codes their scatter by label (written by process 0)."""
  x = data.to_float(eval_set['image'][: config['num_figure_images']])
  images = jax.device_get(steps.bind(model.eval_images, config)(state, parallel.replicate({'image': x}, mesh),
                                                                keys.vis))
  codes = None
  if hasattr(model, 'encode') and config.get('latent_dim') == 2:
    n = min(len(eval_set['image']), 2000)
    codes = jax.device_get(model.encode(state, parallel.replicate(data.to_float(eval_set['image'][:n]), mesh)))
  if not parallel.is_primary():
    return
  out = workdir / 'figures'
  out.mkdir(exist_ok=True)
  figures = {'loss': plotting.loss_curves(records, model.HEADLINE)}
  for name, grid in images.items():
    figures[name] = (plotting.reconstructions(x, grid) if name == 'reconstructions'
                     else plotting.samples(grid, title=name.replace('_', ' ')))
  if codes is not None:
    density = getattr(model, 'prior_log_density', None)
    figures['codes'] = plotting.codes(codes, eval_set['label'][: len(codes)],
                                      density and steps.bind(density, config))
  for name, fig in figures.items():
    fig.savefig(out / f'{name}.png', dpi=100)


class Result(NamedTuple):
  state: Any
  config: dict
  records: list


def _log_epoch(log, epoch, state, split, sums, **extra) -> dict:
  means = metrics.means({k: v for k, v in sums.items() if k != 'skipped_steps'})
  record = {'epoch': epoch, 'split': split, 'step': int(state.step), **means, **extra}
  log.write(record)
  return record


class _Run(NamedTuple):
  """Everything `train_and_evaluate` sets up before its loop."""

  config: dict
  model: Any
  splits: data.Splits
  keys: Keys
  mesh: Any
  resident: bool
  train_x: Any
  eval_x: Any
  zero: dict


def _setup(overrides: dict, workdir: Path, sets: dict | None = None) -> tuple[_Run, Any]:
  """Validates everything that can be without reading checkpoints, and makes the workdir; returns the run and
  its fresh, replicated state."""
  check_workdir_path(workdir)
  if sets is not None:
    require(overrides.get('dataset', 'arrays') == 'arrays', f"data= is given, so the dataset is your arrays; "
            f"drop dataset={overrides.get('dataset')!r} from the config")
    overrides = {**overrides, 'dataset': 'arrays'}
  config = config_lib.resolve(overrides)
  if config['data_dir'] and Path(config['data_dir']).exists():  # saved absolute: the run loads from any folder
    config['data_dir'] = str(Path(config['data_dir']).resolve())
  model = models.get(config['model'])
  splits = data.prepare(config, sets, compact=True)  # uint8 images stay uint8, on the device too
  steps_per_epoch = -(-len(splits.train['image']) // config['batch_size'])
  config = resolve_schedule(config, steps_per_epoch)
  check_workdir(workdir, config)
  check_trained_steps(workdir, config, steps_per_epoch)
  keys = make_keys(config['seed'])
  try:
    state = model.create_state(keys.init, config, {'image': data.to_float(splits.train['image'][:1])})
  except ValueError as e:
    raise UserError(f'{e}') from None
  mesh = parallel.make_mesh()
  for key in ('batch_size', 'eval_batch_size'):
    parallel.check_batch_size(key, config[key], mesh)

  workdir.mkdir(parents=True, exist_ok=True)
  train_x, eval_x = splits.train['image'], splits.eval['image']
  resident = config['data_mode'] == 'resident' or (  # records on disk stream unless resident is asked for
      config['data_mode'] == 'auto' and not data.is_lazy(train_x) and parallel.fits_on_device(train_x.nbytes))
  if resident:
    train_x, eval_x = (np.asarray(x) if data.is_lazy(x) else x for x in (train_x, eval_x))
    train_x, eval_x = parallel.replicate((train_x, eval_x), mesh)
  zero = zero_sums(steps.bind(model.train_step, config), state, splits.train['image'][: config['batch_size']], keys)
  keys, state = parallel.replicate((keys, state), mesh)
  return _Run(config, model, splits, keys, mesh, resident, train_x, eval_x, zero), state


def train_and_evaluate(overrides: dict, workdir: str | Path, progress: bool = True, data: dict | None = None
                       ) -> Result:
  """Trains `config['model']` on `config['dataset']`, or on `data`, resuming from `workdir` if it holds a run.

  `data`: your own images, `jaxae.data.from_arrays(train_images, train_labels, test_images, test_labels)`
  or `{'train': jaxae.data.from_source(source), 'test': ...}`; the config's dataset is then 'arrays'
  (pass the same data again to resume, or to `jaxae.load`).

  Writes `config.json`, `metrics.jsonl`, `checkpoints/` and `figures/` in `workdir`
  (process 0 writes the files; every process runs the same loop).
  Every input is validated before anything is written.

  Raises:
    UserError: bad config, data or workdir; or a non-finite loss (the last
      good checkpoint is kept).
  """
  workdir = Path(workdir)
  run, state = _setup(overrides, workdir, data)
  with checkpoint.Checkpointer(workdir / 'checkpoints', run.config['keep_checkpoints']) as ckpt:
    state, records = _train(run, state, ckpt, workdir, progress)
  write_figures(run.model, state, run.splits.eval, run.keys, run.config, workdir, records, run.mesh)
  return Result(state, run.config, records)


def _position(done: int, steps_per_epoch: int, chunk: int, per_epoch: int, state_step: int) -> int:
  """Chunks done, from the number of steps done (checkpoints are numbered by steps, as metrics.jsonl counts)."""
  epochs_done, within = divmod(done, steps_per_epoch)
  require(within % chunk == 0 and int(state_step) <= done,
          f'the checkpoint at {done} does not fall on a chunk boundary of this run ({chunk} steps per chunk, '
          f'its state at step {int(state_step)}): it was written by another checkpoint_every or an older jaxae; '
          'use a new workdir')
  return epochs_done * per_epoch + within // chunk


def _train(run: _Run, state, ckpt: checkpoint.Checkpointer, workdir: Path, progress: bool):
  """Resumes from `ckpt` and trains to `config['epochs']`; returns `(state, metric records)`.

  config.json is written only after the restore worked, so a failed resume leaves the workdir as it was.
  """
  config, keys, n_train = run.config, run.keys, len(run.splits.train['image'])
  chunk_fn, eval_fn = compile_fns(run.model, config, n_train, run.mesh, run.zero, run.resident)
  chunk, per_epoch = chunk_size(config, n_train)
  steps_per_epoch = -(-n_train // config['batch_size'])
  restored, done = ckpt.restore({'state': state, 'sums': run.zero})
  state, sums = restored['state'], restored['sums']
  position = _position(done, steps_per_epoch, chunk, per_epoch, state.step)
  if parallel.is_primary():
    checkpoint.write_config(workdir, config)
  log = metrics.MetricsLog(workdir / 'metrics.jsonl' if parallel.is_primary() else None,
                           position // per_epoch if position else -1)
  if position == 0:
    _log_epoch(log, 0, state, 'eval', jax.device_get(eval_fn(state, run.eval_x, keys.eval)))

  bar = tqdm(total=config['epochs'] * steps_per_epoch, initial=done,
             disable=not (progress and parallel.is_primary()), unit='step', desc=config['model'])
  seconds = 0.0
  with bar:
    while position < config['epochs'] * per_epoch:
      epoch, c = divmod(position, per_epoch)
      epoch += 1
      t0 = time.perf_counter()
      state, chunk_sums, g = chunk_fn(state, run.train_x, epoch, c * chunk, keys)
      chunk_sums, g = jax.device_get((chunk_sums, g))  # the one host sync per chunk; state stays on device
      seconds = (0.0 if c == 0 else seconds) + time.perf_counter() - t0
      guard.check(g, [k for k in chunk_sums if k not in ('count', 'skipped_steps')], float(chunk_sums['count']),
                  epoch, config['nonfinite'], last_saved=done or None)
      sums = jax.tree.map(np.add, run.zero if c == 0 else sums, chunk_sums)
      position += 1
      if position % per_epoch == 0:
        train = _log_epoch(log, epoch, state, 'train', sums, seconds=seconds, examples_per_sec=n_train / seconds,
                           skipped_steps=int(sums['skipped_steps']))
        test = _log_epoch(log, epoch, state, 'eval', jax.device_get(eval_fn(state, run.eval_x, keys.eval)))
        bar.set_postfix({f'{split} {k}': f'{r[k]:.3f}' for split, r in (('train', train), ('eval', test))
                         for k in run.model.HEADLINE})
      now = (epoch - 1) * steps_per_epoch + min((c + 1) * chunk, steps_per_epoch)
      ckpt.save(now, {'state': state, 'sums': sums})
      bar.update(now - done)
      done = now
      if STOP.is_set():  # Ctrl-C in the CLI: stop on a saved chunk boundary
        raise KeyboardInterrupt
  return state, log.records
