"""The one exception type the command line turns into a one-line message.

A `UserError` means the input is wrong (a config value, a file, a dataset name),
not the code. Its message names the problem and the fix in one line; the CLI
prints it and exits with status 2, without a traceback.
"""

import argparse
import errno
import os
import re
import sys


class UserError(ValueError):
  """Bad input: the message says what is wrong and how to fix it."""


def require(condition: bool, message: str) -> None:
  """Raises `UserError(message)` unless `condition` holds."""
  if not condition:
    raise UserError(message)


def report(program: str, message: str) -> None:
  """Prints `{program}: error: {message}` to stderr as one write, so that a line printed by another thread
  (orbax reports a failed background save from its own threads) lands before or after it, never inside it."""
  sys.stderr.write(f'{program}: error: {message}\n')
  sys.stderr.flush()


_CODE = re.compile(r"os_error_code='(\d+)'|\(os error (\d+)\)")  # tensorstore's (orbax), Rust's (safetensors)
_STRERRORS = {os.strerror(code): code for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)}


def os_error(e: BaseException) -> OSError | None:
  """The operating-system error behind `e`: `e` itself, one in its chain of causes, or one that a C++ library
  (tensorstore under orbax, array_record) reported only in its message; None if there is none."""
  seen: BaseException | None = e
  while seen is not None:
    if isinstance(seen, OSError):
      return seen
    seen = seen.__cause__ or seen.__context__
  message = str(e)
  found = _CODE.search(message)
  code = int(found.group(1) or found.group(2)) if found else next((c for s, c in _STRERRORS.items() if s in message),
                                                                   None)
  return None if code is None else OSError(code, os.strerror(code))


def filesystem_error(e: OSError, path, consequence: str) -> UserError:
  """One line for an operating-system error while jaxae writes (no space, read-only, permission, a name too
  long...): the path, the cause and its errno name, `consequence` (what is kept), and what to do."""
  cause = e.strerror or str(e) or type(e).__name__
  code = f' ({errno.errorcode[e.errno]})' if e.errno is not None and e.errno in errno.errorcode else ''
  return UserError(f'cannot write {e.filename or path}: {cause}{code}; {consequence}: free space, fix the '
                   'permissions or give another folder, then re-run the same command')


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors (a bad flag value, a missing flag) are one line, exit status 2,
  instead of the usage block and the error."""

  def error(self, message: str):
    self.exit(2, f'{self.prog}: error: {message}; see {self.prog} --help\n')
