"""Orbax checkpoints of the model state (and, apart, what only the loop needs), and the run's config as JSON.

Checkpoints are atomic (orbax writes to a temporary folder and renames it);
nothing is loaded with pickle or eval: arrays come back through orbax into a
target built by `create_state`, the config through `json`.
"""

import errno
import json
import os
import shutil
import time
import warnings
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxae import config as config_lib
from jaxae import errors, models
from jaxae.errors import UserError
from jaxae.loop import restore
from jaxae.loop.restore import METADATA, latest_step, step_folders  # noqa: F401  (the names readers and tests know)

PRUNED = '.pruned'  # checkpoints/.pruned/: old checkpoints on their way out, emptied at the next save
HEADROOM = 1 << 20  # bytes a checkpoint needs beyond its arrays' (metadata, JSON), with room to spare


class Checkpointer:
  """The one writer of a run's checkpoints: saves the model state, and what only the loop needs, under increasing
  integer steps, keeping the newest `keep`; a context manager that closes.

  A checkpoint `<step>/` holds `state/` and `loop/` (`jaxae.loop.restore`
  reads them, here and in any reader). Old checkpoints leave in one rename
  into `checkpoints/.pruned/`, emptied at the next save, so a reader sees a
  committed step folder whole or not at all.
  """

  def __init__(self, directory: str | Path, keep: int = 3):
    self.keep, self.directory = keep, Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(  # lightweight: orbax's step metadata is not read (the readers' rule)
        max_to_keep=keep, create=True, cleanup_tmp_directories=True, todelete_subdir=PRUNED,
        lightweight_initialize=True)
    handlers = {'state': ocp.StandardCheckpointHandler(), 'loop': ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def save(self, step: int, state, loop: dict, config: dict | None = None) -> None:
    """Writes `state` (a pytree) and `loop` (`{name: float}`) as checkpoint `step`, atomically, in the background:
    it returns once the arrays are copied to the host (the state may then be donated), and the files are written
    and committed meanwhile. The previous save is committed first. `config`: written to the workdir's config.json
    first, once the disk has room for the checkpoint (a resumed run's settings go in with its first save).

    Raises:
      OSError: the previous save failed, or the disk has no room for this one (nothing written).
    """
    self._finish()
    self._empty_pruned()
    need, free = sum(a.nbytes for a in jax.tree.leaves(state)) + HEADROOM, shutil.disk_usage(self.directory).free
    if free < need:
      raise OSError(errno.ENOSPC, f'{os.strerror(errno.ENOSPC)} (checkpoint {step} needs about {need:,} bytes, '
                    f'{free:,} are free)', str(self.directory / str(step)))
    if config is not None:
      write_config(self.directory.parent, config)
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop))
    self.manager.save(step, args=args)

  def _finish(self) -> None:
    """Waits for the save in the background; its failure raised as the `OSError` behind it (a full disk), with
    the uncommitted folder removed."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:
      cause = errors.os_error(e)
      if cause is None:
        raise
      for tmp in self.directory.glob('*.orbax-checkpoint-tmp*'):  # the failed save's (this process is the writer)
        shutil.rmtree(tmp, ignore_errors=True)
      raise OSError(cause.errno, cause.strerror, str(self.directory)) from None

  def steps(self) -> list[int]:
    """The steps of the kept checkpoints, oldest first."""
    return restore.step_folders(self.directory)

  def restore(self, template, step: int | None = None):
    """`(state, step)` from checkpoint `step` (default: the latest), or `(template, 0)` when there is none; a save
    in the background is committed first (`jaxae.loop.restore.restore`)."""
    self._finish()
    return restore.restore(self.directory, template, step)

  def read(self, step: int, part: str = 'state'):
    """Deprecated (0.2.0): `jaxae.loop.restore.read(directory, step)`."""
    warnings.warn('Checkpointer.read moved to jaxae.loop.restore.read(directory, step)', DeprecationWarning,
                  stacklevel=2)
    return restore.read(self.directory, step, part)

  def restore_loop(self, step: int) -> dict:
    """The loop's item of checkpoint `step`: `{metric: float}` sums of its epoch so far."""
    return restore.read_loop(self.directory, step)

  def close(self) -> None:
    """Closes the manager, then prunes checkpoint folders beyond the newest `keep` (a save cut short by Ctrl-C can
    commit one more without the manager pruning it)."""
    try:
      self._finish()
    finally:
      self.manager.close()
    self._empty_pruned()
    for step in self.steps()[:-self.keep]:
      (self.directory / PRUNED).mkdir(exist_ok=True)
      (self.directory / str(step)).replace(self.directory / PRUNED / str(step))
    self._empty_pruned()

  def _empty_pruned(self) -> None:
    for folder in (self.directory / PRUNED).iterdir() if (self.directory / PRUNED).is_dir() else ():
      shutil.rmtree(folder, ignore_errors=True)

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class SavePolicy:
  """When a chunk boundary gets a checkpoint, and the config that goes with a resumed run's first save.

  A checkpoint is due every chunk of `checkpoint_every` steps, else every `checkpoint_epochs`-th epoch end; and
  whenever `checkpoint_minutes` have passed since the last; and at the end of the run, or when it is asked to
  stop. A new run writes its config.json when it starts (killed before its first checkpoint, it is still
  recognised as a run); a resumed one with its first save, so a resume that fails (damaged data, a NaN) leaves
  the workdir as it was.
  """

  def __init__(self, config: dict, plan, saved: int, config_due: bool):
    self.config, self.plan = config, plan
    self.saved, self.last = saved, time.monotonic()
    self.config_due = config_due

  def due(self, position: int, stop: bool = False) -> bool:
    """Whether the boundary after `position` chunks gets a checkpoint (`stop`: the run is asked to stop)."""
    config = self.config
    epoch, within = divmod(position, self.plan.chunks_per_epoch)
    return (position == self.plan.total_chunks or config['checkpoint_every'] > 0 or stop
            or (within == 0 and epoch % config['checkpoint_epochs'] == 0)
            or 0 < config['checkpoint_minutes'] * 60 <= time.monotonic() - self.last)

  def save(self, ckpt: Checkpointer, step: int, state, sums: dict) -> None:
    """Checkpoint `step` (in the background), the epoch's metric sums so far beside it."""
    ckpt.save(step, state, {k: float(v) for k, v in sums.items()}, self.config if self.config_due else None)
    self.record(step)

  def record(self, step: int) -> None:
    """Checkpoint `step` was saved (by `save`, or by a caller that writes its own: a sweep's stacked states)."""
    self.saved, self.last, self.config_due = step, time.monotonic(), False


def write_config(workdir: Path, config: dict) -> None:
  """Writes `config.json` atomically."""
  path = Path(workdir) / 'config.json'
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(config_lib.to_json(config))
  tmp.replace(path)


def read_config(workdir: Path) -> dict | None:
  """The config saved in `workdir`, or None; `UserError` if it is not valid JSON.

  Keys added to jaxae after the run was written take their defaults (a new key's
  default keeps the old behaviour), so older runs still load and resume.
  """
  path = Path(workdir) / 'config.json'
  if not path.exists():
    return None
  try:
    saved = config_lib.from_json(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
    raise UserError(f'{path} is not a valid config; restore it or use a new workdir') from None
  if saved.get('model') not in models.names():
    return saved
  return {**config_lib.defaults(saved['model']), **saved}
