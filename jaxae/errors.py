"""The one exception type the command line turns into a one-line message.

A `UserError` means the input is wrong (a config value, a file, a dataset name),
not the code. Its message names the problem and the fix in one line; the CLI
prints it and exits with status 2, without a traceback.
"""

import argparse


class UserError(ValueError):
  """Bad input: the message says what is wrong and how to fix it."""


def require(condition: bool, message: str) -> None:
  """Raises `UserError(message)` unless `condition` holds."""
  if not condition:
    raise UserError(message)


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors (a bad flag value, a missing flag) are one line, exit status 2,
  instead of the usage block and the error."""

  def error(self, message: str):
    self.exit(2, f'{self.prog}: error: {message}; see {self.prog} --help\n')
