"""Checks of config values, shared by the base config and every family's `validate` (imports no family).

Each raises `UserError` with one line that names the key, the problem and the fix.
"""

from collections.abc import Mapping
from typing import Any

from jaxae.errors import require

__all__ = ['ARCHS', 'check', 'check_network', 'require']

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
