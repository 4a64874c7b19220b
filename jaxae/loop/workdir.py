"""The workdir rules of a run (what may resume where, and what it writes besides checkpoints) and its figures.

A workdir holds `config.json`, `metrics.jsonl`, `checkpoints/` and `figures/`.
A run resumes only in a workdir whose saved config matches its own but for
`RESUMABLE_CHANGES`; nothing in a workdir is changed before every check passed.
"""

import warnings
from pathlib import Path

import jax
import numpy as np

from jaxae import data, errors, metrics, models, plotting, portable, steps
from jaxae.errors import UserError, require
from jaxae.loop import checkpoint, formats, parallel
from jaxae.loop.keys import Keys
from jaxae.loop.lock import LOCK

RESUMABLE_CHANGES = ('epochs', 'num_figure_images', 'keep_checkpoints', 'data_dir', 'nonfinite', 'data_mode',
                     'stream_steps', 'read_threads', 'allow_other_data', 'checkpoint_epochs', 'checkpoint_minutes',
                     'eval_every', 'devices', 'kernels')  # none changes what is computed (devices, kernels: up to float
# rounding; a run begun on CPU may go on on a GPU)


def saved_run(workdir: Path, splits) -> dict | None:
  """The config of the run in `workdir`, in this jaxae's format (`formats.migrate`; `splits()`: the run's data, if
  a migration needs them), or None for a new or empty folder; `UserError` for an exported model or a folder that
  holds something else."""
  require(not portable.is_exported(workdir), f'{workdir} holds a model exported with jaxae.export, not a training '
          f'run: train in another workdir (jaxae.load reads the export as it is)')
  check_not_foreign(workdir)
  saved = checkpoint.read_config(workdir)
  return None if saved is None else formats.migrate(saved, workdir, splits)


def check_workdir(workdir: Path, config: dict, saved: dict | None) -> None:
  """`UserError` if `saved`, the config of the run in `workdir` (`saved_run`), differs from `config` in more than
  RESUMABLE_CHANGES.

  `config` has `decay_steps` resolved, so raising `epochs` under a decaying
  schedule (which would stretch it mid-run) is refused with its own line.
  """
  if saved is None:
    return
  saved = dict(saved)
  if saved['prng_impl'] == 'auto':  # format 2 with no header to tell: what this start resolved
    saved['prng_impl'] = config['prng_impl']
  changed = data.changes(saved['data_fingerprint'], config['data_fingerprint'])
  require(not changed or config['allow_other_data'], f'{workdir} holds a run trained on other data ({changed}): '
          'resume it on the data it was trained on, use a new workdir, or set allow_other_data=true if you mean it')
  saved['data_fingerprint'] = config['data_fingerprint']
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


OWN = ('checkpoints', LOCK)  # what a run may leave before its config.json: an empty checkpoints/, the lock


def check_workdir_path(workdir: str | Path) -> Path:
  """`workdir` as a Path; `UserError` if it is empty, or if it or the nearest of its parents that exists is not a
  folder."""
  require(str(workdir).strip() != '', '--workdir is empty: give the folder of the run, e.g. --workdir runs/vae')
  workdir = Path(workdir)
  try:
    for p in (workdir, *workdir.parents):
      if p.exists():
        require(p.is_dir(), f'--workdir {workdir}: {p} is a file, not a folder; give a folder path')
        break
  except OSError as e:  # a name too long, a folder that cannot be searched...
    raise UserError(f'--workdir {str(workdir)[:80]}{"..." if len(str(workdir)) > 80 else ""}: {e.strerror}; give '
                    'another folder path') from None
  return workdir


def check_not_foreign(workdir: Path) -> None:
  """`UserError` if `workdir` is a folder with something in it but no run: jaxae recognises a run by its
  `config.json`, never by folder names, and writes into nothing else."""
  if workdir.is_dir() and not (workdir / 'config.json').exists():
    foreign = sorted(p.name for p in workdir.iterdir()
                     if p.name not in OWN or (p.name == 'checkpoints' and (p.is_file() or any(p.iterdir()))))
    require(not foreign, f"{workdir} holds no jaxae run (no config.json) but is not empty ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}): give a new or empty folder")


def check_trained_steps(workdir: Path, config: dict, steps_per_epoch: int) -> None:
  """`UserError` if `workdir`'s newest checkpoint is past `epochs` (a lower --epochs than the run has)."""
  done = checkpoint.latest_step(workdir / 'checkpoints')
  total = config['epochs'] * steps_per_epoch
  if done is not None and done > total:
    raise UserError(f'{workdir} holds a run trained for {done} steps ({done / steps_per_epoch:g} epochs); --epochs '
                    f"{config['epochs']} ({total} steps) is fewer: raise --epochs to continue it, or evaluate it as "
                    f'it is with scripts/evaluate.py {workdir}')


def resolve_schedule(config: dict, steps_per_epoch: int) -> dict:
  """`config` with its schedules in steps: `decay_steps` = 0 (the whole run) resolved to `epochs * steps_per_epoch`
  for a decaying schedule, and a KL warm-up given in epochs (`kl_warmup`, the hierarchical VAE's) to
  `kl_warmup_steps`; they are saved so a resumed run follows the schedules it started with."""
  if config['schedule'] != 'constant' and not config['decay_steps']:
    config = {**config, 'decay_steps': config['epochs'] * steps_per_epoch}
  if config.get('kl_warmup') and not config.get('kl_warmup_steps'):
    config = {**config, 'kl_warmup_steps': max(1, round(config['kl_warmup'] * steps_per_epoch))}
  return config


def write_figures(model, state, eval_set, keys: Keys, config, workdir: Path, records, mesh=None) -> dict:
  """figures/: one PNG per grid `model.eval_images` returns (reconstructions under their originals), the
  headline metrics per epoch, and for 2-D codes their scatter by label (written by process 0, which returns
  `{name: Figure}`; the others return `{}`)."""
  x = data.to_float(eval_set['image'][: config['num_figure_images']])
  batch = {'image': x, 'label': np.asarray(eval_set['label'][: len(x)], np.int32)}
  # jitted, as one program each: eagerly, every layer of a conv net is a program of its own (a DCGAN's figures
  # took 2.1 s eagerly on 2 CPU cores)
  images = {} if len(x) == 0 else jax.device_get(  # num_figure_images=0: the loss figure alone
      jax.jit(steps.bind(model.eval_images, config))(state, parallel.replicate(batch, mesh), keys.vis))
  codes = None
  if models.can(model, 'encode') and config.get('latent_dim') == 2:
    n = min(len(eval_set['image']), 2000)
    codes = jax.device_get(jax.jit(model.encode)(state, parallel.replicate(data.to_float(eval_set['image'][:n]),
                                                                            mesh)))
  if not parallel.is_primary():
    return {}
  out = workdir / 'figures'
  out.mkdir(exist_ok=True)
  figures = {'loss': plotting.loss_curves(records, model.HEADLINE)}
  for name, grid in images.items():
    if name == 'reconstructions':
      figures[name] = plotting.reconstructions(x, grid)
    elif name == 'class_grid':  # a conditional family's: one style per row, the classes across
      figures[name] = plotting.samples(grid, cols=config['num_classes'], title='classes 0-9 across, one style per row'
                                       if config['num_classes'] == 10 else 'classes across, one style per row')
    else:
      figures[name] = plotting.samples(grid, title=name.replace('_', ' '))
  if codes is not None:
    density = steps.bind(model.prior_log_density, config) if models.can(model, 'prior_density') else None
    figures['codes'] = plotting.codes(codes, eval_set['label'][: len(codes)], density)
  for name, fig in figures.items():
    fig.savefig(out / f'{name}.png', dpi=100)
  return figures


def write_failed(e: OSError, workdir: Path) -> UserError:
  """After an operating-system error while the run wrote (no space, read-only...): metrics.jsonl cut back to the
  last checkpoint (process 0; the re-run writes those epochs again), and the one line that says so
  (`jaxae.errors.filesystem_error`)."""
  try:
    last = checkpoint.latest_step(Path(workdir) / 'checkpoints')
  except OSError:  # the same cause, e.g. the name too long
    last = None
  if parallel.is_primary():
    metrics.truncate_after(Path(workdir) / 'metrics.jsonl', -1 if last is None else last)
  kept = (f'the checkpoint at step {last} is the last good state and is kept' if last is not None
          else 'no checkpoint had been saved yet')
  return errors.filesystem_error(e, workdir, kept)


def filesystem_error(e: OSError, workdir: Path) -> UserError:
  """Deprecated (0.2.0): `write_failed` (which also cuts metrics.jsonl back), or `jaxae.errors.filesystem_error`."""
  warnings.warn('jaxae.loop.workdir.filesystem_error moved: use write_failed, or jaxae.errors.filesystem_error',
                DeprecationWarning, stacklevel=2)
  return write_failed(e, workdir)
