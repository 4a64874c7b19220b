"""The notebooks' one parameter, `RUN`: which data they train on and for how long.

- 'smoke': the embedded digits for a few epochs, with narrow networks (`SMOKE_NETWORKS`, where the notebook
  does not set them); CI executes every notebook so.
- 'digits' (the default): the embedded digits (8x8), each notebook within about
  3 minutes on 2 CPU cores.
- 'mnist': MNIST (28x28) and longer training. The IDX files in the folder
  `$JAXAE_MNIST_DIR` when it is set (the test-set files alone do: the first
  9,000 images train, the last 1,000 evaluate), else the TFDS 'mnist' dataset,
  prepared once on a machine with network (see `jaxae.data.load_tfds`).

A notebook reads its settings with `pick(RUN, smoke=..., digits=..., mnist=...)`
and trains with `train(RUN, overrides)`, which adds the setting's data.
"""

import os
import tempfile

from jaxae import metrics, models
from jaxae.errors import require
from jaxae.loop.train import train_and_evaluate
from jaxae.runs import Loaded, load

RUNS = ('smoke', 'digits', 'mnist')
SMOKE_NETWORKS = {'hidden': (64, 32), 'disc_hidden': (64, 32), 'conv_features': (8, 16)}  # families' widths
MNIST_DIR = 'JAXAE_MNIST_DIR'


def check(run: str) -> None:
  require(run in RUNS, f"RUN = {run!r} is not a setting: choose one of {', '.join(map(repr, RUNS))}")


def pick(run: str, *, smoke, digits, mnist):
  """The value that setting `run` uses, e.g. `pick(RUN, smoke=2, digits=50, mnist=10)` epochs."""
  check(run)
  return {'smoke': smoke, 'digits': digits, 'mnist': mnist}[run]


def data(run: str) -> dict:
  """Config overrides selecting the setting's dataset (for `jaxae.train_and_evaluate`)."""
  check(run)
  if run != 'mnist':
    return {'dataset': 'digits'}
  folder = os.environ.get(MNIST_DIR)
  if folder:
    return {'dataset': 'idx', 'data_dir': folder, 'holdout': 1000, 'holdout_order': 'tail'}
  return {'dataset': 'mnist'}


def new_workdir(name: str) -> str:
  """A fresh temporary folder for one run, `jaxae-<name>-*`."""
  return tempfile.mkdtemp(prefix=f'jaxae-{name}-')


def train(run: str, overrides: dict, workdir: str | None = None) -> tuple[Loaded, list[dict]]:
  """Trains `overrides` on the setting's data (and, 'smoke', narrow networks) in `workdir` (default: a fresh one;
  an existing run resumes, e.g. to train a few more epochs); returns `(jaxae.load(workdir), the metrics.jsonl
  records)`."""
  model = overrides.get('model', 'vae')
  workdir = workdir or new_workdir(model)
  defaults = models.get(model).defaults() if run == 'smoke' else {}
  narrow = {k: v for k, v in SMOKE_NETWORKS.items() if k in defaults}
  train_and_evaluate({**data(run), **narrow, **overrides}, workdir, progress=False)
  return load(workdir), metrics.read(f'{workdir}/metrics.jsonl')


def sweep(run: str, base: dict, members: list[dict], workdir: str | None = None):
  """`jaxae.sweep` of `members` over `base` on the setting's data (and, 'smoke', narrow networks) in `workdir`
  (default: a fresh one); returns its `jaxae.sweeps.SweepResult`."""
  from jaxae.sweeps import sweep as sweep_fn

  model = base.get('model', 'vae')
  defaults = models.get(model).defaults() if run == 'smoke' else {}
  narrow = {k: v for k, v in SMOKE_NETWORKS.items() if k in defaults}
  return sweep_fn({**data(run), **narrow, **base}, members, workdir or new_workdir(f'{model}-sweep'), progress=False,
                  echo=lambda line: None)
