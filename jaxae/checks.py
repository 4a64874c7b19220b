"""Checks of config values, shared by the base config and every family's `validate` (imports no family).

Each raises `UserError` with one line that names the key, the problem and the fix.
"""

import warnings
from collections.abc import Mapping
from typing import Any

from jaxae.errors import require

__all__ = ['ARCHS', 'UNSET', 'check', 'check_network', 'keyword_only', 'new_setting', 'require', 'resolved']

ARCHS = ('mlp', 'conv')
NORMS = ('none', 'batch', 'layer')  # conv normalisations: jaxae.nn.normalize


def check(config: Mapping[str, Any], *, choices: Mapping[str, tuple] | None = None, positive=(),
          non_negative=(), probabilities=()) -> None:
  """Raises `UserError` for the first of the named keys whose value is out of range."""
  for key, allowed in (choices or {}).items():
    require(config[key] in allowed, f"{key}='{config[key]}' is not one of {', '.join(allowed)}")
  for key in positive:
    require(config[key] > 0, f'{key} must be positive, got {config[key]}; set {key} > 0')
  for key in non_negative:
    require(config[key] >= 0, f'{key} must be >= 0, got {config[key]}')
  for key in probabilities:
    require(0 <= config[key] < 1, f'{key} must be in [0, 1), got {config[key]}')


def check_network(config: Mapping[str, Any]) -> None:
  """The keys of the shared encoder/decoder blocks: `arch`, `latent_dim`, `conv_features`, `norm` (and a GAN's
  `d_norm`)."""
  norms = [k for k in ('norm', 'd_norm') if k in config]
  check(config, choices={'arch': ARCHS, **dict.fromkeys(norms, NORMS)}, positive=('latent_dim',))
  if config['arch'] == 'conv':
    require(len(config['conv_features']) > 0, 'arch=conv needs at least one conv_features entry')
  for key in norms:
    require(config[key] == 'none' or config['arch'] == 'conv',
            f"{key}={config[key]} normalises conv layers: set arch=conv, or {key}=none")


UNSET = object()  # the default of an argument that moved from positional to keyword-only


def keyword_only(fn: str, name: str, args: tuple, value):
  """The value of argument `name` of `fn(..., *args, name=UNSET)`, which took it positionally until 0.2.0: the
  positional form still works for one release, with a `DeprecationWarning`; missing is a `UserError`."""
  if args:
    warnings.warn(f'{fn}(..., {name}) positionally is deprecated: pass {name}=...', DeprecationWarning,
                  stacklevel=3)
    require(len(args) == 1 and value is UNSET, f'{fn}: give {name} once, by keyword ({name}=...)')
    return args[0]
  require(value is not UNSET, f'{fn}: missing {name}=...')
  return value



def resolved(config: Mapping[str, Any], defaults: Mapping[str, Any], model: str, where: str) -> None:
  """`UserError` unless `config` holds every setting of family `model` (its `defaults`): a config from
  `jaxae.config.resolve`, not a dict of a few overrides."""
  missing = sorted(set(defaults) - set(config))
  require(not missing, f"{where}: the config lacks {', '.join(missing[:3])}{' and more' if len(missing) > 3 else ''}"
          f": pass it through jaxae.config.resolve({{'model': {model!r}, ...}}) first, which fills in the defaults "
          'and checks every value')


def new_setting(fn: str, name: str, value, default):
  """The value of hyperparameter `name`, new in 0.2.0, of `fn(..., *, name=UNSET)`: `default` with a
  `DeprecationWarning` when a caller of the 0.1 form leaves it out (`steps.bind` always passes it)."""
  if value is UNSET:
    warnings.warn(f'{fn}() without {name}= is deprecated: pass {name}={default!r} (or bind the config with '
                  'jaxae.steps.bind)', DeprecationWarning, stacklevel=3)
    return default
  return value
