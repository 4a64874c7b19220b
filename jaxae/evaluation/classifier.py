"""A small image classifier trained by jaxae, whose penultimate layer is the feature space of the
classifier Fréchet distance and whose predictions give the class histogram of generated samples.

An MLP (ReLU 256-128, `features` = the 128-d last hidden layer) trained with
Adam on device-resident data, one compiled `lax.scan` per epoch. This is not
Inception: distances in its space are comparable within one dataset and one
classifier, not with published FIDs.
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae import losses
from jaxae.data import batch_indices
from jaxae.evaluation import common


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
  """A trained classifier: `net.apply({'params': params}, x) -> (logits, features)`, and its held-out accuracy."""

  net: MLPClassifier
  params: dict
  accuracy: float


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
