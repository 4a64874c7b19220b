"""Principal component analysis in JAX: the linear baseline every autoencoder is compared with.

`fit` streams the data in batches (memory: one `[batch, D]` block and the
`[D, D]` covariance, so 60,000 x 784 MNIST needs a few MiB beyond the data),
accumulates the centred scatter matrix at full float32 matmul precision (also
on GPU/TPU, where the default would be TF32/bf16), and takes its top
eigenvectors. The optimum of a linear autoencoder with K hidden units under
squared error spans the same subspace (Baldi & Hornik 1989), so PCA's
reconstruction error is the bar a linear autoencoder can at best reach.

Inputs may be images `[N, H, W, C]` or vectors `[N, D]`; they are flattened.

References:
  Pearson, On Lines and Planes of Closest Fit, 1901.
  Baldi & Hornik, Neural Networks and Principal Component Analysis, 1989.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.errors import require

HIGHEST = jax.lax.Precision.HIGHEST


class PCA(NamedTuple):
  """A fitted PCA: `mean [D]`, `components [K, D]` (orthonormal rows, by decreasing variance),
  `explained_variance [K]` (eigenvalues, ddof=1) and `total_variance` (their sum over all D)."""

  mean: jax.Array
  components: jax.Array
  explained_variance: jax.Array
  total_variance: jax.Array

  @property
  def explained_variance_ratio(self) -> jax.Array:
    """`[K]` fraction of the total variance along each component."""
    return self.explained_variance / self.total_variance


def _flat(x) -> jax.Array:
  return jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)


@jax.jit
def _sum(x):
  return jnp.sum(_flat(x), axis=0)


@jax.jit
def _scatter(x, mean):
  c = _flat(x) - mean[None]
  return jnp.matmul(c.T, c, precision=HIGHEST)


def fit(x, n_components: int, batch_size: int = 8192) -> PCA:
  """The top `n_components` principal components of `x: [N, ...]` (NumPy or JAX), in batches.

  Raises:
    UserError: `n_components` not in [1, min(N - 1, D)].
  """
  n, d = x.shape[0], int(np.prod(x.shape[1:]))
  require(1 <= n_components <= min(n - 1, d),
          f'PCA needs 1 <= n_components <= min(N - 1, D) = {min(n - 1, d)}, got {n_components}')
  batches = [x[i:i + batch_size] for i in range(0, n, batch_size)]
  mean = sum(_sum(b) for b in batches) / n
  cov = sum(_scatter(b, mean) for b in batches) / (n - 1)
  eigenvalues, eigenvectors = jnp.linalg.eigh(cov)  # ascending
  top = jnp.argsort(eigenvalues)[::-1][:n_components]
  return PCA(mean, eigenvectors[:, top].T, jnp.maximum(eigenvalues[top], 0.0), jnp.trace(cov))


def encode(pca: PCA, x) -> jax.Array:
  """Coordinates along the components: `[N, ...] -> [N, K]`."""
  return jnp.matmul(_flat(x) - pca.mean[None], pca.components.T, precision=HIGHEST)


def decode(pca: PCA, z: jax.Array) -> jax.Array:
  """Back to the data space: `[N, K] -> [N, D]` (reshape to images as needed)."""
  return jnp.matmul(z, pca.components, precision=HIGHEST) + pca.mean[None]


def reconstruct(pca: PCA, x) -> jax.Array:
  """The projection of `x: [N, ...]` on the principal subspace, in `x`'s shape."""
  return decode(pca, encode(pca, x)).reshape(x.shape)
