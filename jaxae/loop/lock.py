"""One writer per workdir: an advisory lock (`flock`) on `<workdir>/.lock`, held while a run writes there.

The kernel drops the lock when its process ends, however it ends (SIGKILL too), so a lock is never stale: a
second run on the same workdir is refused with one line while the first is alive, and goes ahead after. The file
stays empty, so taking the lock changes no byte of the workdir.
"""

import contextlib
import fcntl
import os
from pathlib import Path

from jaxae.errors import UserError

LOCK = '.lock'


@contextlib.contextmanager
def held(workdir: Path):
  """Holds `workdir`'s lock for the block; `UserError` if another process holds it."""
  fd = os.open(Path(workdir) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise UserError(f'{workdir} is being written by another run (it holds {LOCK} there); wait for it to end, '
                      'or use another workdir') from None
    yield
  finally:
    os.close(fd)  # releases the lock
