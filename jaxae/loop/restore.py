"""Reading checkpoints without changing them: what `jaxae.load`, the evaluation and export scripts and a resuming
run use to read a run's state.

A reader opens one committed step folder with orbax's item handlers, never a
`CheckpointManager`: a manager creates folders and deletes the "temporary"
ones, which are the checkpoints a training run is writing at that moment. So a
run can be read while it trains: a reader takes the newest committed checkpoint
(a numbered folder holding orbax's commit metadata) and the writer never sees it.

A step folder holds two items: `state/` (the model's training state: params,
optimizer and any other state of the family) and `loop/` (JSON: the
partial-epoch metric sums, for an exact mid-epoch resume). Checkpoints of the
first format hold one item, `default/`, `{'state', 'sums'}`; they are read too.
"""

import collections
import contextlib
import gc
import logging
import sys
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxae.errors import UserError
from jaxae.loop.step import all_finite

METADATA = '_CHECKPOINT_METADATA'  # orbax writes it into a step folder when the step is committed
RETRIES = 3  # reads of the newest checkpoint retried when the writer removed it meanwhile (its `keep` reached)


def step_folders(directory: str | Path) -> list[int]:
  """The steps of the checkpoints in `directory`, oldest first, without opening them: numbered folders that orbax
  committed (they hold its `_CHECKPOINT_METADATA`). Other folders, numbered or not, are not jaxae's: never
  counted, never deleted."""
  directory = Path(directory)
  if not directory.is_dir():
    return []
  steps = []
  for p in directory.iterdir():
    with contextlib.suppress(OSError):  # a folder the writer removes while it is listed
      if p.name.isdigit() and (p / METADATA).is_file():
        steps.append(int(p.name))
  return sorted(steps)


def latest_step(directory: str | Path) -> int | None:
  """The newest checkpoint step in `directory`; None if none."""
  return max(step_folders(directory), default=None)


def restore(directory: str | Path, template, step: int | None = None):
  """`(state, step)` from checkpoint `step` of `directory` (default: the newest committed one), or
  `(template, 0)` when there is none. Reads, never writes.

  `template` (e.g. a freshly created state) gives the structure, shapes, dtypes and placement.

  Raises:
    UserError: the checkpoint holds another model's state, or its files are damaged.
  """
  directory = Path(directory).absolute()  # orbax's handlers take absolute paths
  return _newest(directory, step, lambda s: _restore_state(directory, template, s)) or (template, 0)


def read(directory: str | Path, step: int | None = None, part: str = 'state'):
  """The arrays of checkpoint `step`'s model state (default: the newest) on this process's first device, with no
  template (any number of devices may have written it), for inspection: a tree of dicts. (`part='sums'`: the first
  format's loop sums.) Reads, never writes."""
  directory = Path(directory).absolute()

  def read_step(s):
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          _metadata(directory, s))
    if _legacy(directory, s):
      return _restore_item(directory, s, 'default', ocp.args.StandardRestore(target))[part]
    return _restore_item(directory, s, 'state', ocp.args.StandardRestore(target))

  found = _newest(directory, step, read_step)
  if found is None:
    raise UserError(f'{directory} holds no checkpoint yet: let its run finish an epoch')
  return found[0]


def read_loop(directory: str | Path, step: int) -> dict:
  """The loop's item of checkpoint `step`: `{metric: float}` sums of its epoch so far."""
  directory = Path(directory).absolute()
  if _legacy(directory, step):
    return {k: float(v) for k, v in read(directory, step, 'sums').items()}
  return dict(_restore_item(directory, step, 'loop', ocp.args.JsonRestore()))


def _newest(directory, step: int | None, read_step) -> tuple | None:
  """`(read_step(step), step)`, with `step` None the newest committed step (again from the newest if the writer
  removed that one while it was read: it keeps its last `keep`); None when there is no checkpoint."""
  directory = Path(directory)
  for attempt in range(RETRIES + 1):
    newest = latest_step(directory) if step is None else step
    if newest is None:
      return None
    try:
      return read_step(newest), newest
    except UserError:
      if step is not None or attempt == RETRIES or newest in step_folders(directory):
        raise  # not removed meanwhile: damaged, or of another model
  return None


def _restore_state(directory: Path, template, step: int):
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  metadata = _metadata(directory, step)
  legacy = _legacy(directory, step)
  saved = metadata['state'] if legacy else metadata
  _check_fits(directory, step, saved, target)
  before_batch_norm = 'batch_stats' not in saved  # written before states carried batch statistics
  if before_batch_norm:  # none to read (`_check_fits`: the template has none either); orbax restores the rest
    target = {field: getattr(target, field) for field in ('step', 'params', 'opt_state')}  # into a dict
  if legacy:
    sums = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), metadata['sums'])
    state = _restore_item(directory, step, 'default', ocp.args.StandardRestore({'state': target, 'sums': sums}))
    state = state['state']
  else:
    state = _restore_item(directory, step, 'state', ocp.args.StandardRestore(target))
  if before_batch_norm:
    state = template.replace(**state)
  if not bool(all_finite(state)):  # jaxae never saves a non-finite state: these bytes were damaged on disk
    raise UserError(f'checkpoint {step} in {directory} holds NaN or Inf values, which jaxae never saves: its files '
                    f'are damaged; {_fallback(directory, step)}')
  return state


def _check_fits(directory: Path, step: int, metadata, target) -> None:
  """`UserError` unless checkpoint `step`'s arrays have the shapes and dtypes of `target`'s: a run asked to be
  something else (another model, other data) than what wrote it, not a damaged checkpoint."""
  saved = collections.Counter((tuple(m.shape), str(m.dtype)) for m in jax.tree.leaves(metadata))
  wanted = collections.Counter((tuple(t.shape), str(t.dtype)) for t in jax.tree.leaves(target))
  if saved != wanted:  # compared as multisets: orbax's metadata and the state order their leaves differently
    there, here = sorted(saved - wanted), sorted(wanted - saved)
    first = (f'{there[0][0]} {there[0][1]} there, {here[0][0]} {here[0][1]} here' if there and here
             else f'{saved.total()} arrays there, {wanted.total()} here')
    raise UserError(f'checkpoint {step} in {directory} holds the state of another model or input shape than this '
                    f'run builds ({first}): it is intact; load it with the config and data it was trained with, or '
                    'use a new workdir')


def _fallback(directory: Path, step: int) -> str:
  """What to do about a damaged checkpoint `step`: resume from the one before it, if any."""
  earlier = [s for s in step_folders(directory) if s < step]
  if earlier:
    return f'move that step folder out of checkpoints/ to resume from step {earlier[-1]}'
  return 'it is the run\'s only checkpoint: retrain in a new workdir'


def _legacy(directory: Path, step: int) -> bool:
  return (directory / str(step) / 'default').is_dir()


def _metadata(directory: Path, step: int):
  item = 'default' if _legacy(directory, step) else 'state'
  return _orbax(directory, step, lambda: ocp.StandardCheckpointHandler().metadata(directory / str(step) / item))


def _restore_item(directory: Path, step: int, item: str, args):
  """Item `item` of step folder `step`, read by its own orbax handler (which opens files for reading only)."""
  handler = ocp.JsonCheckpointHandler() if isinstance(args, ocp.args.JsonRestore) else ocp.StandardCheckpointHandler()
  try:
    return _orbax(directory, step, lambda: handler.restore(directory / str(step) / item, args=args))
  finally:
    handler.close()


def _orbax(directory: Path, step: int, read):
  """`read()` of checkpoint `step` through orbax; its failure raised as one `UserError` (`_quiet_reads`)."""
  with _quiet_reads() as failed:
    try:
      return read()
    except Exception as e:  # orbax raises many types for unreadable files
      failed(e)
      error = type(e).__name__
  if not (directory / str(step) / METADATA).is_file():
    raise UserError(f'checkpoint {step} in {directory} is gone (the run keeps only its newest checkpoints): '
                    f'read another, one of {step_folders(directory)}')
  raise UserError(f'checkpoint {step} in {directory} cannot be read ({error}): its files are damaged; '
                  f'{_fallback(directory, step)}') from None


def _abandoned(args) -> bool:
  """Whether an unraisable exception is one of orbax's abandoned reads: tensorstore completing a read against the
  event loop that orbax closed when another read failed."""
  return isinstance(args.exc_value, RuntimeError) and 'Event loop is closed' in str(args.exc_value)


def _unretrieved(record: logging.LogRecord) -> bool:
  """False for asyncio's "exception was never retrieved" reports of those abandoned reads' tasks."""
  return 'exception was never retrieved' not in record.getMessage()


@contextlib.contextmanager
def _quiet_reads(quiet: float = 1.0, limit: float = 10.0):
  """Orbax's noise where it arises, for one read only: when one of its reads fails it closes its event loop while
  tensorstore still reads the other files, and each of those then reports "Event loop is closed" through
  `sys.unraisablehook` (and asyncio reports their tasks' exceptions as never retrieved) — tracebacks that would
  bury the one line. Meanwhile exactly those reports are dropped (everything else goes where it went); after a
  failure (`failed(e)`) the block waits until they have stopped for `quiet` seconds; then both hooks are put back.
  """
  previous, logger = sys.unraisablehook, logging.getLogger('asyncio')
  last = [time.monotonic()]

  def hook(args):
    if _abandoned(args):
      last[0] = time.monotonic()
    else:
      previous(args)

  failures: list[BaseException] = []
  sys.unraisablehook = hook
  logger.addFilter(_unretrieved)
  try:
    yield failures.append
  finally:
    start = time.monotonic()
    while failures and time.monotonic() - max(last[0], start) < quiet and time.monotonic() - start < limit:
      time.sleep(0.05)
    gc.collect()  # the abandoned tasks report "never retrieved" when collected: here, while filtered
    sys.unraisablehook = previous
    logger.removeFilter(_unretrieved)
