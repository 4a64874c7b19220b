"""Representation quality: linear-probe and k-NN accuracy on the codes of a run, and of PCA at the same size.

The run encodes its training and held-out images (a VAE: posterior means).

- Linear probe: multinomial logistic regression on the standardised training
  codes (full-batch Adam from optax, a small L2 penalty), accuracy on the
  held-out codes.
- k-NN: majority vote of the k = 5 nearest training codes (Euclidean).

PCA with as many components as the run has code units gets the same probes,
so each row says whether the autoencoder's code is more useful than PCA's.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxae import pca
from jaxae.errors import require
from jaxae.evaluation import common

HEADLINE = {'linear_probe_accuracy': 'accuracy', 'knn_accuracy': 'accuracy'}  # the comparison table's columns

KNN_K = 5


@functools.partial(jax.jit, static_argnames=('n_classes', 'steps'))
def _fit_logistic(z, y, n_classes: int, steps: int, learning_rate: float, l2: float):
  params = (jnp.zeros((z.shape[1], n_classes)), jnp.zeros(n_classes))
  tx = optax.adam(learning_rate)

  def loss(params):
    w, b = params
    ce = optax.softmax_cross_entropy_with_integer_labels(z @ w + b[None], y)
    return jnp.mean(ce) + 0.5 * l2 * jnp.sum(w * w)

  def body(carry, _):
    params, opt_state = carry
    updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), None

  return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[0][0]


def linear_probe_accuracy(z_train, y_train, z_eval, y_eval, *, steps: int = 1000, learning_rate: float = 0.01,
                          l2: float = 1e-4) -> float:
  """Held-out accuracy of logistic regression fitted on `(z_train [N, d], y_train [N])`, features standardised
  with the training mean and std."""
  z_train, z_eval = np.asarray(z_train, np.float32), np.asarray(z_eval, np.float32)
  mean, std = z_train.mean(axis=0), z_train.std(axis=0) + 1e-6
  n_classes = int(max(np.max(y_train), np.max(y_eval))) + 1
  w, b = _fit_logistic((z_train - mean) / std, jnp.asarray(y_train), n_classes, steps, learning_rate, l2)
  predicted = np.argmax(((z_eval - mean) / std) @ np.asarray(w) + np.asarray(b), axis=-1)
  return float(np.mean(predicted == np.asarray(y_eval)))


@functools.partial(jax.jit, static_argnames=('k', 'n_classes'))
def _knn_votes(z_train, y_train, query, k: int, n_classes: int):
  d2 = jnp.sum(query**2, 1)[:, None] - 2 * query @ z_train.T + jnp.sum(z_train**2, 1)[None]
  _, nearest = jax.lax.top_k(-d2, k)
  return jnp.argmax(jnp.sum(jax.nn.one_hot(y_train[nearest], n_classes), axis=1), axis=-1)


def knn_predict(z_train, y_train, z_query, k: int = KNN_K) -> np.ndarray:
  """Majority label of the `k` nearest training codes for each query `[M, d] -> [M]` (ties: the smaller label)."""
  require(1 <= k <= len(z_train), f'k-NN needs 1 <= k <= {len(z_train)} training points, got k={k}')
  n_classes = int(np.max(y_train)) + 1
  z_train, y_train = jnp.asarray(z_train, jnp.float32), jnp.asarray(y_train)
  return common.batched(lambda q: _knn_votes(z_train, y_train, q, k, n_classes), np.asarray(z_query, np.float32))


def probes(z_train, y_train, z_eval, y_eval) -> tuple[float, float]:
  """`(linear-probe accuracy, k-NN accuracy)` of codes."""
  knn = float(np.mean(knn_predict(z_train, y_train, z_eval) == np.asarray(y_eval)))
  return linear_probe_accuracy(z_train, y_train, z_eval, y_eval), knn


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'probe')
  require(len(np.unique(loaded.splits.train['label'])) > 1, 'the probe suite needs a run trained on labelled '
          f"images of several classes; this one saw {np.unique(loaded.splits.train['label']).tolist()}")


def run(loaded, key, **_):
  """`({latent_dim, linear_probe_accuracy, knn_accuracy, pca_linear_probe_accuracy, pca_knn_accuracy}, {})`."""
  del key
  train, held_out = loaded.splits.train, loaded.splits.eval
  k = loaded.config['latent_dim']
  linear, knn = probes(common.encode(loaded, train['image']), train['label'],
                       common.encode(loaded, held_out['image']), held_out['label'])
  p = pca.fit(train['image'], k)
  pca_codes = [common.batched(lambda v: pca.encode(p, v), s['image']) for s in (train, held_out)]
  pca_linear, pca_knn = probes(pca_codes[0], train['label'], pca_codes[1], held_out['label'])
  return {'latent_dim': k, 'linear_probe_accuracy': linear, 'knn_accuracy': knn,
          'pca_linear_probe_accuracy': pca_linear, 'pca_knn_accuracy': pca_knn}, {}
