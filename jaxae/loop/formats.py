"""The run folder's format, versioned: `config.json` records `format_version`, and a run written by an older
jaxae is read through `migrate`, one function per version step; a newer one is refused in one line.

- 1: jaxae 0.1's first runs: no input shape nor data fingerprint in config.json; their checkpoints hold one
  item, `default` (`{'state', 'sums'}`), and states without batch statistics (`jaxae.loop.restore` reads
  each checkpoint by the items orbax recorded in it, whichever version wrote it);
- 2: jaxae 0.1: the input shape and a fingerprint of the data in config.json; `prng_impl='auto'` resolved anew
  at every start (the first start's choice is in its metrics.jsonl header);
- 3: jaxae 0.2: `format_version`, and the PRNG implementation and kernels resolved once, when the run began.

A migration returns the config as this jaxae would have written it; the files are not rewritten (a run's
config.json is rewritten, in the new format, with its first checkpoint after a resume).
"""

from collections.abc import Callable
from pathlib import Path

from jaxae import data as data_lib
from jaxae import metrics
from jaxae.errors import UserError

RUN_FORMAT = 3


def version(config: dict) -> int:
  """The format version of a saved `config`: its record, or, for the runs written before versions were
  recorded, 2 if it records the input shape, else 1."""
  recorded = config.get('format_version')
  if recorded is None:
    return 2 if 'input_shape' in config else 1
  return recorded


def migrate(config: dict, workdir: Path, splits: Callable[[], data_lib.Splits]) -> dict:
  """`config` (as saved in `workdir`) in the current format; `splits()` gives the run's data, asked for only by a
  step that needs them (format 1 did not record their shape).

  Raises:
    UserError: a run of a newer format than this jaxae reads.
  """
  found = version(config)
  if found > RUN_FORMAT:
    raise UserError(f'{workdir} holds a run written by a newer jaxae (run format {found}; this jaxae reads up to '
                    f'{RUN_FORMAT}): upgrade jaxae to read it')
  for step in STEPS[found - 1:]:
    config = step(config, workdir, splits)
  return config


def _1_to_2(config: dict, workdir: Path, splits) -> dict:
  """Format 1 recorded neither the input shape nor the data's fingerprint: the run's data tell."""
  prepared = splits()
  return {**config, 'input_shape': tuple(prepared.train['image'].shape[1:]),
          'data_fingerprint': data_lib.fingerprint(prepared)}


def _2_to_3(config: dict, workdir: Path, splits) -> dict:
  """Format 2 resolved `prng_impl='auto'` at every start: the run began with what its first start's header says
  (where there is none, it stays 'auto', to be resolved as then)."""
  impl = config.get('prng_impl', 'auto')
  if impl == 'auto':
    first = metrics.headers(Path(workdir) / 'metrics.jsonl')[:1]
    impl = first[0].get('prng_impl', 'auto') if first else 'auto'
  return {**config, 'prng_impl': impl, 'format_version': 3}


STEPS = (_1_to_2, _2_to_3)  # STEPS[v - 1] takes format v to v + 1
