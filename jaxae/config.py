"""Configs are flat dicts: the base keys below plus the model family's `defaults()`.

`resolve(overrides)` merges and type-checks them; every bad value raises a
`UserError` whose one line names the key, the problem and the fix.

Presets (expected results are in the README):
  model=vae dataset=digits epochs=30            # the main job, ~1 min on 2 CPU cores
  model=vae dataset=idx data_dir=../shared/data/mnist holdout=1000 holdout_order=tail
"""

import json
import math
from collections.abc import Mapping
from typing import Any

from jaxae import models, prng
from jaxae.checks import ARCHS, check, check_network
from jaxae.errors import UserError, require

__all__ = ['ARCHS', 'BASE', 'DESCRIPTIONS', 'check', 'check_network', 'defaults', 'describe', 'from_json',
           'parse_overrides', 'parse_value', 'require', 'resolve', 'to_json', 'validate']

BASE = dict(
    model='vae', dataset='digits', data_dir=None, epochs=30, batch_size=128,
    eval_batch_size=500, learning_rate=1e-3, adam_b1=0.9, adam_b2=0.999, weight_decay=0.0, schedule='constant',
    warmup_steps=0, decay_steps=0, grad_clip=0.0, seed=0, binarize='none', holdout=0.1,
    holdout_order='seeded', keep_checkpoints=3, num_figure_images=32, nonfinite='stop',
    checkpoint_every=0, precision='f32', data_mode='auto', train_classes=(), stream_steps=16, read_threads=4,
    allow_other_data=False, prng_impl='auto', matmul_precision='default', checkpoint_epochs=1,
    checkpoint_minutes=0.0, eval_every=1, devices=0, labels_per_class=0, kernels='auto',
)

DESCRIPTIONS = dict(  # the base keys and the network keys every family shares; a family describes its own in KEYS
    model='model family (see --help)', dataset='digits, idx, records, or a prepared TFDS image dataset',
    data_dir='folder of the IDX files or of the records, or the TFDS data dir (default: $TFDS_DATA_DIR)',
    epochs='passes over the training set', batch_size='examples per training step',
    eval_batch_size='examples per evaluation batch', learning_rate='Adam step size (peak, for a schedule)',
    adam_b1='Adam beta_1', adam_b2='Adam beta_2', weight_decay='AdamW decoupled weight decay (0: Adam)',
    schedule='learning-rate schedule: constant, cosine, warmup_cosine', warmup_steps='linear warm-up steps',
    decay_steps='cosine decay length in steps (0: the whole run, fixed when it starts)',
    grad_clip='global gradient-norm clip (0: none)', seed='seed of every random draw of the run',
    binarize='none, threshold, sample (one fixed draw) or dynamic (a fresh draw per step)',
    holdout='held-out fraction (< 1) or count, when the dataset has no test split',
    holdout_order='seeded (a random subset) or tail (the last examples)',
    keep_checkpoints='checkpoints kept in the workdir', num_figure_images='images per figure',
    nonfinite='on a NaN/Inf step: stop (keep the last good checkpoint) or skip the update',
    checkpoint_every='checkpoint every N steps, also within an epoch (0: at epoch ends, see checkpoint_epochs)',
    checkpoint_epochs='checkpoint at the end of every N-th epoch (and of the run), written in the background',
    checkpoint_minutes='also checkpoint when N minutes have passed since the last one (0: never for that reason)',
    eval_every='evaluate on the held-out set after every N-th epoch (and the last)',
    devices='devices to train on, an equal share from each process (0: all)',
    precision='f32, or bf16 matmul inputs with float32 accumulation and parameters',
    data_mode='auto, resident (data on the device) or streaming (batches read from host memory or disk)',
    stream_steps='streaming: batches sent to the device together and scanned in one call',
    read_threads='streaming: threads reading and gathering batches ahead of the device (grain)',
    train_classes='labels kept in the training set, e.g. 0 or 3,5 (empty: all); evaluation keeps all',
    labels_per_class='semi-supervised: the training labels kept, the first N images of each class (0: all); the '
                     'others become -1 (unlabelled); evaluation keeps all',
    allow_other_data='resume a run on other data than it was trained on (refused by default)',
    prng_impl=f'PRNG implementation: auto ({prng.NAME}, threefry unrolled, on CPU; JAX\'s default elsewhere), '
              'threefry2x32, rbg, unsafe_rbg',
    kernels='the kernels of convs and bf16 matmuls, chosen once when a run starts: auto (jaxae\'s CPU kernels on XLA '
            'CPU within the jaxlib versions they were checked on, JAX\'s own elsewhere), xla (JAX\'s and Flax\'s own '
            'everywhere: forward-mode AD works through them), cpu (jaxae\'s, XLA CPU only)',
    matmul_precision='float32 matmuls and convs (jax.default_matmul_precision): default (JAX\'s setting, else the '
                     'backend\'s: TF32 on recent NVIDIA GPUs, bf16 passes on TPU, float32 on CPU), high, highest',
    arch='mlp or conv (stride-2 4x4 convs)', hidden='MLP hidden widths, encoder order, e.g. 512,256 (empty: linear)',
    conv_features='conv channels per stride-2 layer, encoder order', latent_dim='code / latent size',
    norm='conv nets: none, batch (batch norm, running averages at evaluation) or layer norm, after every conv '
         'layer but the encoder\'s first and the decoder\'s output',
    likelihood='decoder likelihood: bernoulli (logits, binary cross-entropy) or gaussian (unit variance, 0.5 SSE)',
)

CHOICES = dict(
    schedule=('constant', 'cosine', 'warmup_cosine'),
    binarize=('none', 'threshold', 'sample', 'dynamic'), holdout_order=('seeded', 'tail'),
    nonfinite=('stop', 'skip'), precision=('f32', 'bf16'), data_mode=('auto', 'resident', 'streaming'),
    prng_impl=('auto', prng.NAME, 'threefry2x32', 'rbg', 'unsafe_rbg'), matmul_precision=('default', 'high', 'highest'),
    kernels=('auto', 'xla', 'cpu'),
)
POSITIVE = ('epochs', 'batch_size', 'eval_batch_size', 'learning_rate', 'keep_checkpoints', 'stream_steps',
            'read_threads', 'checkpoint_epochs', 'eval_every')
NON_NEGATIVE = ('checkpoint_every', 'checkpoint_minutes', 'devices', 'weight_decay', 'warmup_steps', 'decay_steps',
                'grad_clip', 'num_figure_images', 'seed')
PROBABILITIES = ('adam_b1', 'adam_b2')
LABEL_TUPLES = ('train_classes',)  # tuples of labels (>= 0); other tuples are layer sizes (> 0)
RECORDED = ('input_shape', 'data_fingerprint', 'format_version')  # what a run records in config.json; `resolve`
# drops them


def describe(model: str) -> list[tuple[str, Any, str]]:
  """`(key, default, meaning)` for every config key of `model`, sorted by key."""
  meanings = {**DESCRIPTIONS, **models.get(model).KEYS}
  return [(k, v, meanings.get(k, '')) for k, v in sorted(defaults(model).items())]


def defaults(model: str) -> dict:
  """The full default config of `model`."""
  return {**BASE, 'model': model, **models.get(model).defaults()}


def parse_value(key: str, text: str, default: Any) -> Any:
  """Parses the command-line string `text` for `key` to the type of `default`."""
  if isinstance(default, bool):
    require(text.lower() in ('true', 'false', '1', '0'), f'{key} must be true or false, got {text!r}')
    return text.lower() in ('true', '1')
  try:
    if isinstance(default, int):
      return int(text)
    if isinstance(default, float):
      return float(text)
    if isinstance(default, tuple):
      return tuple(int(v) for v in text.replace('(', '').replace(')', '').split(',') if v.strip())
  except ValueError:
    kind = 'comma-separated integers' if isinstance(default, tuple) else type(default).__name__
    raise UserError(f'{key}={text!r} is not a valid {kind}; fix the value') from None
  if default is None and text.lower() == 'none':
    return None
  return text


def parse_overrides(pairs: list[str], model: str) -> dict:
  """Parses `key=value` strings against `model`'s defaults."""
  base = defaults(model)
  out = {}
  for pair in pairs:
    require('=' in pair, f"override {pair!r} is not key=value; write e.g. --set beta=0.5")
    key, text = pair.split('=', 1)
    require(key in base, f"unknown config key '{key}' for model {model}: choose from {', '.join(sorted(base))}")
    out[key] = parse_value(key, text, base[key])
  return out


def _check_types(config: Mapping[str, Any], base: Mapping[str, Any]) -> None:
  for key, value in config.items():
    default = base[key]
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
      ok = ok and (isinstance(value, int) or not isinstance(default, int))
      require(not ok or math.isfinite(value), f'config {key}={value!r} is not a finite number; give a finite value')
    elif isinstance(default, tuple):
      least = 0 if key in LABEL_TUPLES else 1
      ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) and v >= least for v in value)
    else:
      ok = value is None or isinstance(value, str)
    require(ok, f'config {key}={value!r} has the wrong type; expected a value like {default!r}')


def validate(config: Mapping[str, Any]) -> None:
  """Raises `UserError` for the first bad value in a resolved config: base keys here, the
  family's own keys in its `validate(config)`."""
  check(config, choices=CHOICES, positive=POSITIVE, non_negative=NON_NEGATIVE, probabilities=PROBABILITIES)
  h = config['holdout']
  require(0 < h < 1 or (float(h).is_integer() and h >= 1),
          f'holdout must be a fraction in (0, 1) or a count >= 1, got {h}')
  models.get(config['model']).validate(config)


def resolve(overrides: Mapping[str, Any] | None = None) -> dict:
  """Defaults of the chosen model updated by `overrides`, validated. A value may be given as the command line
  writes it (`hidden='128,64'`, `beta='0.5'`, `tied='true'`).

  Raises:
    UserError: unknown model or key, wrong type, or impossible value.
  """
  overrides = {k: v for k, v in (overrides or {}).items() if k not in RECORDED}
  base = defaults(str(overrides.get('model', BASE['model'])))
  unknown = sorted(set(overrides) - set(base))
  require(not unknown, f"unknown config key(s) {', '.join(unknown)}: choose from {', '.join(sorted(base))}")
  overrides = {k: parse_value(k, v, base[k]) if isinstance(v, str) and base[k] is not None else v
               for k, v in overrides.items()}  # what the command line takes, e.g. hidden='128,64', beta='0.5'
  _check_types(overrides, base)
  config = {**base, **overrides}
  config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
  validate(config)
  return config


def to_json(config: Mapping[str, Any]) -> str:
  return json.dumps(config, indent=2, sort_keys=True)


def from_json(text: str) -> dict:
  """Parses a saved config (plain JSON: no pickle, no eval); lists become tuples."""
  return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
