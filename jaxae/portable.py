"""The portable model folder's format: weights in safetensors, config.json; `jaxae.share.export` writes one,
`jaxae.load(folder)` reads it back (with `load_state` here)::

    out/config.json        the family, its config (hyperparameters, input shape), the step, the jaxae version,
                           and `files`: the size and sha256 of every file the export wrote (format 2 on)
    out/model.safetensors  the weights: `params/<part>/<layer>/<name>` and `batch_stats/...` (safetensors:
                           a JSON header and raw little-endian arrays; no pickle, no code)
    out/README.md          the model card (`jaxae.card`): family, data, held-out metrics, figures
    out/figures/*.png      the run's sample / reconstruction / loss figures (and its evaluation's, if any)

Loading needs none of the run's working state (no orbax checkpoint, no dataset, no
optimizer state from the run): the family's `create_state` builds a template on this
process's default device, whatever number of devices trained it, and the weights are
checked against it name by name and shape by shape before they replace it.

References:
  Hugging Face, safetensors: https://huggingface.co/docs/safetensors
"""

import hashlib
import json
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from jaxae import config as config_lib
from jaxae import models
from jaxae.errors import UserError, os_error, require

FORMAT = 'jaxae-model'
FORMAT_VERSION = 2  # 2: config.json lists the files the export wrote, with their sha256
WEIGHTS = 'model.safetensors'


def version() -> str:
  """The installed jaxae's version."""
  try:
    return metadata.version('jaxae')
  except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    return 'unknown'


def flatten(tree: Mapping, prefix: str = '') -> dict[str, np.ndarray]:
  """`{'a/b/c': array}` of a nested dict of arrays (an empty dict leaves no entry)."""
  out = {}
  for name, value in tree.items():
    require('/' not in str(name), f'a weight name holds a "/": {name!r}')
    path = f'{prefix}{name}'
    out.update(flatten(value, path + '/') if isinstance(value, Mapping) else {path: np.asarray(value)})
  return out


def unflatten(template: dict, flat: dict[str, np.ndarray], what: str) -> dict:
  """`template`'s nested dict with each leaf taken from `flat` (same names, shapes and dtypes: `UserError`
  naming the first that differs); `what` names the source in the message."""
  want = {k: np.asarray(v) for k, v in flatten(template).items()}
  odd = [f'missing {k}' for k in sorted(set(want) - set(flat))]
  odd += [f'unexpected {k}' for k in sorted(set(flat) - set(want))]
  if odd:
    raise UserError(f"{what} does not fit this model: {odd[0]}{f' and {len(odd) - 1} more' if len(odd) > 1 else ''}")
  for name, ref in want.items():
    got = flat[name]
    require(got.shape == ref.shape and got.dtype == ref.dtype,
            f'{what}: {name} is {got.dtype}{list(got.shape)}, the model needs {ref.dtype}{list(ref.shape)}')

  def build(node, prefix):
    return {k: build(v, f'{prefix}{k}/') if isinstance(v, Mapping) else flat[f'{prefix}{k}'] for k, v in node.items()}

  return build(template, '')


def weights(state) -> dict:
  """The weights of a family's state, one nested dict: `{'params': ..., 'batch_stats': ...}` (host arrays)."""
  return jax.device_get({'params': dict(state.params), 'batch_stats': dict(state.batch_stats)})


def save_weights(path: Path, tree: dict, meta: dict[str, str]) -> None:
  """`tree` (nested dicts of arrays) to a safetensors file, atomically."""
  tmp = path.with_suffix('.tmp')
  try:
    save_file({k: np.ascontiguousarray(v) for k, v in flatten(tree).items()}, str(tmp), metadata=meta)
  except SafetensorError as e:  # a write the filesystem refused, reported in words
    cause = os_error(e)
    tmp.unlink(missing_ok=True)
    if cause is None:
      raise
    raise OSError(cause.errno, cause.strerror, str(tmp)) from None
  tmp.replace(path)


def load_weights(path: Path) -> dict[str, np.ndarray]:
  """The flat `{name: array}` of a safetensors file; `UserError` if it is not one."""
  try:
    return load_file(str(path))
  except (SafetensorError, OSError, ValueError) as e:
    raise UserError(f'{path} is not a readable safetensors file ({e}); export the model again') from None


def is_exported(folder: str | Path) -> bool:
  """Whether `folder` holds an exported model (its weights file and config.json), not a training workdir."""
  return (Path(folder) / WEIGHTS).is_file() and (Path(folder) / 'config.json').is_file()


def _1_to_2(header: dict) -> dict:
  """Format 1 listed no files (nothing to verify) and said only the step it was exported at."""
  return {**header, 'files': {}, 'progress': f"step {header['step']}", 'format_version': 2}


STEPS = (_1_to_2,)  # STEPS[v - 1] takes export format v to v + 1


def read_header(folder: Path) -> dict:
  """config.json of an exported model, its `config` with tuples and this jaxae's defaults for later keys."""
  try:
    header = json.loads((folder / 'config.json').read_text())
    require(header.get('format') == FORMAT, f"{folder}/config.json is not a jaxae model's (format "
            f"{header.get('format')!r}); export the run with jaxae.export or scripts/export.py")
    config = config_lib.from_json(json.dumps(header['config']))
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
    raise UserError(f'{folder}/config.json is not a valid exported config; export the model again') from None
  require(header.get('format_version', 1) <= FORMAT_VERSION, f'{folder} was exported by a newer jaxae (format '
          f"{header.get('format_version')}, jaxae {header.get('jaxae_version')}): upgrade jaxae to load it")
  for step in STEPS[header.get('format_version', 1) - 1:]:
    header = step(header)
  models.get(config.get('model', ''))  # UserError for a family this jaxae does not have
  step, files = header.get('step'), header.get('files', {})
  require(type(step) is int and step >= 0 and isinstance(files, dict), f'{folder}/config.json is damaged (its '
          f'step is {step!r}, not a whole number of steps): export the model again')
  return {**header, 'config': {**config_lib.defaults(config['model']), **config}}


def record(path: Path) -> dict:
  """`{'bytes', 'sha256'}` of the file at `path`."""
  digest = hashlib.sha256()
  with path.open('rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return {'bytes': path.stat().st_size, 'sha256': digest.hexdigest()}


def verify(folder: Path, header: dict) -> None:
  """`UserError` unless the weights file has the size and sha256 that config.json records for it (exports of
  format 1 record none: not checked)."""
  want = header.get('files', {}).get(WEIGHTS)
  if want is not None and record(folder / WEIGHTS) != want:
    raise UserError(f'{folder / WEIGHTS} is not the file that was exported (its sha256 differs from the one '
                    'config.json records): it is damaged, or an export was cut short; export the run again')


def load_state(folder: Path, header: dict, keys, allow_nonfinite: bool = False):
  """The family's state with the folder's weights: a template from `create_state`, every leaf replaced; the
  weights checked against their record first (`verify`), and refused if any is NaN or Inf unless
  `allow_nonfinite` (then a warning)."""
  config = header['config']
  model = models.get(config['model'])
  verify(folder, header)
  template = models.create_state(model, keys.init, config, {'image': np.zeros((1, *config['input_shape']), np.float32)})
  flat = load_weights(folder / WEIGHTS)
  tree = unflatten(weights(template), flat, f'{folder / WEIGHTS}')
  bad = [k for k, a in flat.items() if a.dtype.kind == 'f' and not np.isfinite(a).all()]
  if bad:
    message = (f"{folder / WEIGHTS}: {bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''} hold NaN or "
               'Inf, so the model computes non-finite outputs')
    require(allow_nonfinite, f'{message}; export a checkpoint from before they appeared, or load with '
            'allow_nonfinite=True to inspect it')
    warnings.warn(message, stacklevel=3)
  state = template.replace(params=jax.device_put(tree['params']), batch_stats=jax.device_put(tree['batch_stats']))
  return model, state.replace(step=jax.numpy.asarray(header['step'], jax.numpy.int32))
