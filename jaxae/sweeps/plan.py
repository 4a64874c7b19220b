"""A sweep's members and groups: which members train together in one program.

A member is one run: the sweep's base overrides with the member's own on top. Members whose resolved configs
differ only in the seed and in float hyperparameters of the family's step (β, noise levels, adversarial and
gradient-penalty weights, label smoothing, ...) train stacked in one program, a *group*: those values become
arrays with a leading member axis. Members that differ in anything else (latent size, widths, the optimizer or
its learning rate, the data) form groups of their own, trained one after another.
"""

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jaxae import config as config_lib
from jaxae import steps
from jaxae.errors import UserError, require

PER_RUN = ('data_fingerprint',)  # recorded per member; members whose data differ carry their own data


def grid(seeds: int = 1, first_seed: int = 0, **values: Sequence[Any]) -> list[dict]:
  """Every combination of `values` (`{key: [value, ...]}`), each with `seeds` seeds from `first_seed`:
  `[{key: value, ..., 'seed': s}, ...]`, the seeds innermost.

  >>> grid(seeds=2, beta=[0.5, 1.0])
  [{'beta': 0.5, 'seed': 0}, {'beta': 0.5, 'seed': 1}, {'beta': 1.0, 'seed': 0}, {'beta': 1.0, 'seed': 1}]
  """
  require(seeds >= 1, f'seeds={seeds}: a sweep needs at least one seed per point')
  keys = list(values)
  points = itertools.product(*(values[k] for k in keys))
  return [{**dict(zip(keys, point, strict=True)), 'seed': first_seed + s} for point in points for s in range(seeds)]


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
  """`['beta=0.25,0.5', 'noise_level=0.1,0.3']` (the CLI's `--grid`) -> `{'beta': ['0.25', '0.5'], ...}`."""
  values: dict[str, list[str]] = {}
  for spec in specs:
    key, sep, listed = spec.partition('=')
    require(bool(sep and key and listed), f'--grid {spec!r} is not KEY=V1,V2,...: e.g. --grid beta=0.5,1,2')
    require(key not in values, f'--grid {key} is given twice: list all its values in one --grid')
    values[key] = [v for v in listed.split(',') if v]
  return values


def member_name(index: int, overrides: Mapping[str, Any]) -> str:
  """A member's folder name: its index, then its own overrides, e.g. `03-beta=0.5-seed=1`."""
  parts = [f'{index:02d}'] + [f'{k}={v}' for k, v in overrides.items()]
  return re.sub(r'[^A-Za-z0-9._=+-]', '_', '-'.join(parts))[:120]


def stackable(model, configs: Sequence[Mapping[str, Any]]) -> set[str]:
  """The keys that may differ within one group: the seed, and the family's step hyperparameters that are floats
  (by their default), as arrays."""
  defaults = model.defaults()
  hp = set(steps.hyperparameters(model.train_step)) | set(steps.hyperparameters(model.eval_step))
  return {'seed'} | {k for k in hp if isinstance(defaults.get(k, configs[0].get(k)), float)}


def swept(configs: Sequence[Mapping[str, Any]]) -> list[str]:
  """The config keys whose values differ between `configs`, sorted."""
  keys = set().union(*configs)
  return sorted(k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1)


def groups(model, configs: Sequence[Mapping[str, Any]]) -> list[list[int]]:
  """Indices of `configs` (resolved member configs) by group, in the order of their first member: members
  are together iff their configs agree outside `stackable` and `PER_RUN`."""
  free = stackable(model, configs) | set(PER_RUN)
  found: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    found.setdefault(config_lib.to_json({k: v for k, v in c.items() if k not in free}), []).append(i)
  return list(found.values())


def check_unchanged(saved: Mapping[str, Any] | None, base: Mapping[str, Any], members: Sequence[Mapping]) -> None:
  """A sweep folder trains the sweep it was made for: `UserError` if `saved` (its sweep.json) names another base
  or other members."""
  if saved is None:
    return
  same = json.dumps([saved['base'], saved['members']], sort_keys=True, default=str) == json.dumps(
      [dict(base), [dict(m) for m in members]], sort_keys=True, default=str)
  if not same:
    raise UserError('this sweep folder holds another sweep (its sweep.json names other members or base '
                    'settings); re-run it as it was, or give another --workdir')
