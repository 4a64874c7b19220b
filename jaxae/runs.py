"""Load a trained run: `jaxae.load(workdir)` -> the family, the trained state, the config and the data.

The state is restored into a template built by the family's `create_state`, on
this process's default device, whatever number of devices wrote the checkpoint.
"""

from pathlib import Path
from typing import Any, NamedTuple

from jaxae import checkpoint, models, steps
from jaxae import data as data_lib
from jaxae.epochs import Keys, make_keys, zero_sums
from jaxae.errors import require


class Loaded(NamedTuple):
  """A trained run: `model` (the family module), `state`, `config`, `splits` (its data), `keys`, `step`."""

  model: Any
  state: Any
  config: dict
  splits: data_lib.Splits
  keys: Keys
  step: int


def load(workdir: str | Path, step: int | None = None, data: dict | None = None) -> Loaded:
  """The run in `workdir` at checkpoint `step` (default: the latest). Reads, never writes.

  `data`: for a run trained on your own arrays (dataset 'arrays'), the same
  `jaxae.data.from_arrays(...)` again.

  Raises:
    UserError: no run or no checkpoint in `workdir`, a corrupt config or
      checkpoint, or data that can no longer be loaded.
  """
  workdir = Path(workdir)
  config = checkpoint.read_config(workdir)
  require(config is not None, f'{workdir} holds no run (no config.json): train one first with '
          f'jaxae-train --workdir {workdir}')
  require((workdir / 'checkpoints').is_dir() and any((workdir / 'checkpoints').iterdir()),
          f'{workdir} has no checkpoint yet: let its training finish an epoch (re-run the same command to resume)')
  model = models.get(config['model'])
  splits = data_lib.prepare(config, data)
  keys = make_keys(config['seed'])
  state = model.create_state(keys.init, config, {'image': splits.train['image'][:1]})
  zero = zero_sums(steps.bind(model.train_step, config), state, splits.train['image'][: config['batch_size']], keys)
  with checkpoint.Checkpointer(workdir / 'checkpoints', config['keep_checkpoints']) as ckpt:
    require(step is None or step in ckpt.steps(), f'{workdir} has no checkpoint {step}; it keeps {ckpt.steps()}')
    restored, step = ckpt.restore({'state': state, 'sums': zero}, step)
  return Loaded(model, restored['state'], config, splits, keys, step)
