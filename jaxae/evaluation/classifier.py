"""A small image classifier trained by jaxae, whose penultimate layer is the feature space of the
classifier Fréchet distance and whose predictions give the class histogram of generated samples.

An MLP (ReLU 256-128, `features` = the 128-d last hidden layer) trained with
Adam on device-resident data, one compiled `lax.scan` per epoch. This is not
Inception: distances in its space are comparable within one dataset and one
classifier, not with published FIDs.

`cached(...)` trains it once per dataset: the classifier of data whose hash
(`data_hash`: every image and label of both splits) is `h` is kept in
`$JAXAE_CACHE/classifiers/h/` (default `~/.cache/jaxae`), its weights in safetensors
and `classifier.json` naming its own hash (of those weights) and held-out accuracy.
Every evaluation of every run on the same data then measures in the same feature
space, and says which one.
"""

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae import losses, portable
from jaxae.data import batch_indices
from jaxae.errors import UserError
from jaxae.evaluation import common

FILES = ('classifier.safetensors', 'classifier.json')


class MLPClassifier(nn.Module):
  """`[B, H, W, C] -> ([B, n_classes] logits, [B, hidden[-1]] features)`."""

  n_classes: int
  hidden: tuple[int, ...] = (256, 128)

  @nn.compact
  def __call__(self, x: jax.Array):
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.n_classes)(h), h


class Classifier(NamedTuple):
  """A trained classifier: `net.apply({'params': params}, x) -> (logits, features)`, its held-out accuracy, and
  (when cached) the hash of its weights and of the data it was trained on."""

  net: MLPClassifier
  params: dict
  accuracy: float
  hash: str = ''
  data_hash: str = ''


def _cross_entropy(params, net, x, y, mask):
  logits, _ = net.apply({'params': params}, x)
  return losses.masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, y), mask)


def train(key, x, y, x_eval, y_eval, *, epochs: int = 20, batch_size: int = 128, learning_rate: float = 1e-3):
  """Trains an `MLPClassifier` on `x: [N, H, W, C]`, integer labels `y: [N]`; accuracy on the eval set.

  Returns:
    `Classifier`.
  """
  y = np.asarray(y)
  net = MLPClassifier(int(max(y.max(), np.max(y_eval))) + 1)
  k_init, k_shuffle = jax.random.split(key)
  params = net.init(k_init, jnp.asarray(x[:1]))['params']
  tx = optax.adam(learning_rate)
  x, y = jnp.asarray(x), jnp.asarray(y)

  @jax.jit
  def epoch(carry, k):
    index, mask = batch_indices(k, x.shape[0], batch_size)

    def body(carry, batch):
      params, opt_state = carry
      i, m = batch
      grads = jax.grad(_cross_entropy)(params, net, x[i], y[i], m)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(body, carry, (index, mask))[0]

  carry = (params, tx.init(params))
  for e in range(epochs):
    carry = epoch(carry, jax.random.fold_in(k_shuffle, e))
  params = carry[0]
  accuracy = float(np.mean(predict(Classifier(net, params, 0.0), x_eval) == np.asarray(y_eval)))
  return Classifier(net, params, accuracy)


@functools.partial(jax.jit, static_argnums=0)
def _apply(net, params, x):
  """`(logits, features)` of `x`: one program per network and shape, the parameters an argument."""
  return net.apply({'params': params}, x)


def predict(classifier: Classifier, x) -> np.ndarray:
  """Predicted classes `[N]` int."""
  return common.batched(lambda v: np.argmax(_apply(classifier.net, classifier.params, v)[0], axis=-1), x)


def features(classifier: Classifier, x) -> np.ndarray:
  """Penultimate-layer features `[N, hidden[-1]]` float32."""
  return common.batched(lambda v: _apply(classifier.net, classifier.params, v)[1], x)


def data_hash(x, y, x_eval, y_eval) -> str:
  """SHA-256 (16 hex digits) of every image (as float32) and label of both splits, with their shapes."""
  digest = hashlib.sha256()
  for a in (np.asarray(x, np.float32), np.asarray(y, np.int64), np.asarray(x_eval, np.float32),
            np.asarray(y_eval, np.int64)):
    digest.update(str(a.shape).encode())
    digest.update(np.ascontiguousarray(a).tobytes())
  return digest.hexdigest()[:16]


def cache_dir() -> Path:
  """`$JAXAE_CACHE/classifiers`, default `~/.cache/jaxae/classifiers` (XDG_CACHE_HOME honoured)."""
  root = os.environ.get('JAXAE_CACHE') or Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'jaxae'
  return Path(root) / 'classifiers'


def cached(x, y, x_eval, y_eval, *, epochs: int = 20) -> Classifier:
  """The classifier of this data (`train` with key 0 and `epochs`), from the cache or trained and cached.

  An entry that does not read back whole (a file missing, its weights not matching their hash) is trained again
  and replaced; two processes that train the same one at once keep the first that lands.
  """
  h = data_hash(x, y, x_eval, y_eval)
  folder = cache_dir() / f'{h}-e{epochs}'
  found = _read(folder, h)
  if found is not None:
    return found
  clf = train(jax.random.key(0), x, y, x_eval, y_eval, epochs=epochs)
  folder.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f'.{h}-'))
  portable.save_weights(tmp / FILES[0], {'params': clf.params}, {'data_hash': h})
  meta = {'data_hash': h, 'hash': _file_hash(tmp / FILES[0]), 'accuracy': clf.accuracy, 'epochs': epochs,
          'n_classes': clf.net.n_classes, 'hidden': list(clf.net.hidden), 'input_shape': list(np.shape(x)[1:]),
          'jaxae_version': portable.version()}
  (tmp / FILES[1]).write_text(json.dumps(meta, indent=2))
  shutil.rmtree(folder, ignore_errors=True)  # a damaged entry (a whole one was returned above)
  try:
    tmp.rename(folder)
  except OSError:  # another process landed its copy first: use that one
    shutil.rmtree(tmp, ignore_errors=True)
  return _read(folder, h) or clf._replace(hash=meta['hash'], data_hash=h)


def _file_hash(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _read(folder: Path, h: str) -> Classifier | None:
  """The cached classifier in `folder`, or None if it is absent or not whole."""
  try:
    meta = json.loads((folder / FILES[1]).read_text())
    if meta['data_hash'] != h or _file_hash(folder / FILES[0]) != meta['hash']:
      return None
    net = MLPClassifier(meta['n_classes'], tuple(meta['hidden']))
    template = {'params': net.init(jax.random.key(0), jnp.zeros((1, *meta['input_shape'])))['params']}
    params = portable.unflatten(template, portable.load_weights(folder / FILES[0]), str(folder))['params']
  except (OSError, ValueError, KeyError, TypeError, UserError):
    return None
  return Classifier(net, jax.device_put(params), float(meta['accuracy']), meta['hash'], h)
