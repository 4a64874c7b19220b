"""The training engine: one visible step, scanned, compiled once, checkpointed.

Read in this order, the way a key and a batch travel:
  keys.py        the randomness plan: `Keys`, `make_keys` (everyone imports this, not the engine)
  step.py        THE step: pixels to float, sharding, `fold_in(keys.step, step)`, the family's step, the guard
  scan.py        the epoch as scans of the step: resident data, or groups streamed from the host
  compile.py     the one place that reads the config and jits
  train.py       `train_and_evaluate`: setup, the loop over chunks, metrics
  workdir.py     what may resume where; figures
  checkpoint.py  the model state (and, apart, the loop's sums) with orbax; config.json
  lock.py        one writer per workdir
  parallel.py    the 'data' mesh, placement, multi-process reads
"""

from jaxae.loop.keys import Keys, make_keys
from jaxae.loop.train import STOP, Result, train_and_evaluate

__all__ = ['STOP', 'Keys', 'Result', 'make_keys', 'train_and_evaluate']
