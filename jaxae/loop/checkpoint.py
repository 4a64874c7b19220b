"""Orbax checkpoints of the model state (and, apart, what only the loop needs), and the run's config as JSON.

Checkpoints are atomic (orbax writes to a temporary folder and renames it);
nothing is loaded with pickle or eval: arrays come back through orbax into a
target built by `create_state`, the config through `json`.
"""

import collections
import contextlib
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxae import config as config_lib
from jaxae import models
from jaxae.errors import UserError
from jaxae.loop.step import all_finite

METADATA = '_CHECKPOINT_METADATA'  # orbax writes it into a step folder when the step is committed


class Checkpointer:
  """Saves the model state, and what only the loop needs, under increasing integer steps, keeping the last `keep`;
  a context manager that closes.

  A checkpoint `<step>/` holds two items: `state/` (the model's training state: params, optimizer and any other
  state of the family; all `jaxae.load` reads) and `loop/` (JSON: the partial-epoch metric sums, for an exact
  mid-epoch resume). Checkpoints of jaxae 0.1 rounds 1-2 hold one item, `default/`, `{'state', 'sums'}`; they are
  read as well.
  """

  def __init__(self, directory: str | Path, keep: int = 3):
    self.keep = keep
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    handlers = {'state': ocp.StandardCheckpointHandler(), 'loop': ocp.JsonCheckpointHandler(),
                'default': ocp.StandardCheckpointHandler()}
    self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options, item_handlers=handlers)

  def save(self, step: int, state, loop: dict) -> None:
    """Writes `state` (a pytree) and `loop` (`{name: float}`) as checkpoint `step`, atomically, in the background:
    it returns once the arrays are copied to the host (the state may then be donated), and the files are written
    and committed meanwhile. The previous save must have finished first (orbax waits for it)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop))
    self.manager.save(step, args=args)

  def steps(self) -> list[int]:
    """The steps of the kept checkpoints, oldest first (`step_folders`: orbax's own listing goes by names)."""
    return step_folders(self.manager.directory)

  def _legacy(self, step: int) -> bool:
    return (Path(self.manager.directory) / str(step) / 'default').is_dir()

  def restore(self, template, step: int | None = None):
    """`(state, step)` from checkpoint `step` (default: the latest), or `(template, 0)` when there is none.

    `template` (e.g. a freshly created state) gives the structure, shapes, dtypes and placement.
    """
    self.manager.wait_until_finished()  # a save in the background is committed first
    step = max(self.steps(), default=None) if step is None else step
    if step is None:
      return template, 0
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    metadata = self._metadata(step)
    saved = metadata['state'] if self._legacy(step) else metadata
    self._check_fits(step, saved, target)
    before_batch_norm = 'batch_stats' not in saved  # written before states carried batch statistics
    if before_batch_norm:  # none to read (`_check_fits`: the template has none either); orbax restores the rest
      target = {field: getattr(target, field) for field in ('step', 'params', 'opt_state')}  # into a dict
    if self._legacy(step):
      sums = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), metadata['sums'])
      item = ocp.args.StandardRestore({'state': target, 'sums': sums})
      state = self._restore(step, ocp.args.Composite(default=item))['default']['state']
    else:
      state = self._restore(step, ocp.args.Composite(state=ocp.args.StandardRestore(target)))['state']
    if before_batch_norm:
      state = template.replace(**state)
    if not bool(all_finite(state)):  # jaxae never saves a non-finite state: these bytes were damaged on disk
      raise UserError(f'checkpoint {step} in {self.manager.directory} holds NaN or Inf values, which jaxae never '
                      f'saves: its files are damaged; {self._fallback(step)}')
    return state, step

  def _check_fits(self, step: int, metadata, target) -> None:
    """`UserError` unless checkpoint `step`'s arrays have the shapes and dtypes of `target`'s: a run asked to be
    something else (another model, other data) than what wrote it, not a damaged checkpoint."""
    saved = collections.Counter((tuple(m.shape), str(m.dtype)) for m in jax.tree.leaves(metadata))
    wanted = collections.Counter((tuple(t.shape), str(t.dtype)) for t in jax.tree.leaves(target))
    if saved != wanted:  # compared as multisets: orbax's metadata and the state order their leaves differently
      there, here = sorted(saved - wanted), sorted(wanted - saved)
      first = (f'{there[0][0]} {there[0][1]} there, {here[0][0]} {here[0][1]} here' if there and here
               else f'{saved.total()} arrays there, {wanted.total()} here')
      raise UserError(f'checkpoint {step} in {self.manager.directory} holds the state of another model or input '
                      f'shape than this run builds ({first}): it is intact; load it with the config and data it was '
                      'trained with, or use a new workdir')

  def _fallback(self, step: int) -> str:
    """What to do about a damaged checkpoint `step`: resume from the one before it, if any."""
    earlier = [s for s in step_folders(self.manager.directory) if s < step]
    if earlier:
      return f'move that step folder out of checkpoints/ to resume from step {earlier[-1]}'
    return 'it is the run\'s only checkpoint: retrain in a new workdir'

  def restore_loop(self, step: int) -> dict:
    """The loop's item of checkpoint `step`: `{metric: float}` sums of its epoch so far."""
    if self._legacy(step):
      return {k: float(v) for k, v in self.read(step, 'sums').items()}
    return dict(self._restore(step, ocp.args.Composite(loop=ocp.args.JsonRestore()))['loop'])

  def _metadata(self, step: int):
    item = 'default' if self._legacy(step) else 'state'
    return self._orbax(step, lambda: self.manager.item_metadata(step)[item])

  def read(self, step: int, part: str = 'state'):
    """The arrays of checkpoint `step`'s model state on this process's first device (no template needed; any
    number of devices may have written it), for inspection: a tree of dicts. (`part='sums'`: a legacy
    checkpoint's loop sums.)"""
    self.manager.wait_until_finished()
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), self._metadata(step))
    if self._legacy(step):
      return self._restore(step, ocp.args.Composite(default=ocp.args.StandardRestore(target)))['default'][part]
    return self._restore(step, ocp.args.Composite(state=ocp.args.StandardRestore(target)))['state']

  def _restore(self, step: int, args):
    return self._orbax(step, lambda: self.manager.restore(step, args=args))

  def _orbax(self, step: int, read):
    """`read()` of checkpoint `step` through orbax, with the process's stderr (fd 2) held in a temporary file
    meanwhile: re-emitted after a good read, dropped after a failed one (see `_quiet_until_drained`), which then
    raises `_unreadable`."""
    with tempfile.TemporaryFile() as sink, _fd2_into(sink):
      try:
        restored, error = read(), None
      except Exception as e:  # orbax raises many types for unreadable files
        restored, error = None, type(e).__name__
      if error is not None:
        gc.collect()  # orbax's failed asyncio tasks report "exception never retrieved" when collected: here, not later
        logging.getLogger('asyncio').addFilter(_drop_unretrieved)  # nor those collected after the drain
        _quiet_until_drained(sink)
    if error is not None:
      raise self._unreadable(step, error) from None
    return restored

  def _unreadable(self, step: int, error: str) -> UserError:
    return UserError(f'checkpoint {step} in {self.manager.directory} cannot be read ({error}): its files are '
                     f'damaged; {self._fallback(step)}')

  def close(self) -> None:
    """Closes the manager, then deletes checkpoint folders beyond the newest `keep` (a save cut short by
    Ctrl-C can commit one more without the manager pruning it)."""
    self.manager.close()
    directory = Path(self.manager.directory)
    for step in step_folders(directory)[:-self.keep]:
      shutil.rmtree(directory / str(step), ignore_errors=True)

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


@contextlib.contextmanager
def _fd2_into(sink):
  """Points file descriptor 2 (stderr, Python's and C++'s) at `sink` for the block; re-emits what was
  written unless `sink.dropped` is set."""
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(sink.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    if not getattr(sink, 'dropped', False):
      sink.seek(0)
      os.write(2, sink.read())


def _drop_unretrieved(record: logging.LogRecord) -> bool:
  """A logging filter: False for asyncio's "exception was never retrieved" reports, which orbax's abandoned
  reads of a failed restore emit whenever they are garbage-collected (the failure itself is reported)."""
  return 'exception was never retrieved' not in record.getMessage()


def _quiet_until_drained(sink, quiet: float = 1.0, limit: float = 10.0) -> None:
  """After a failed restore, waits until `sink` has been quiet for `quiet` seconds, then marks it dropped.

  When orbax's restore fails on one file it closes its event loop while
  tensorstore still reads the others; each of those reads then completes
  against the closed loop and prints an 'Event loop is closed' traceback from
  tensorstore's threads, which would bury the one-line error.
  """
  size, since, start = -1, time.monotonic(), time.monotonic()
  while time.monotonic() - since < quiet and time.monotonic() - start < limit:
    time.sleep(0.05)
    now = os.fstat(sink.fileno()).st_size
    if now != size:
      size, since = now, time.monotonic()
  sink.dropped = True


def step_folders(directory: str | Path) -> list[int]:
  """The steps of the checkpoints in `directory`, oldest first, without opening them: numbered folders that orbax
  committed (they hold its `_CHECKPOINT_METADATA`). Other folders, numbered or not, are not jaxae's: never
  counted, never deleted."""
  directory = Path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / METADATA).is_file())


def latest_step(directory: str | Path) -> int | None:
  """The newest checkpoint step in `directory`; None if none."""
  return max(step_folders(directory), default=None)


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
