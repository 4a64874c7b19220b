"""Distances between two sets of features that the Fréchet distance does not give: the kernel distance (KID) and
precision and recall. Helpers of the `samples` suite (no `run`), pure NumPy in float64.

- Kernel distance (KID; Bińkowski et al. 2018): the unbiased estimate of the squared maximum mean discrepancy
  with the cubic polynomial kernel `k(a, b) = (a . b / F + 1)^3` (F features), averaged over random subsets of
  both sets; unbiased at any sample count, where the Fréchet distance is biased upward at small ones. Two sets
  from one distribution give about 0 (it can be slightly negative).
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around its points,
  each ball reaching the point's k-th nearest neighbour in its own set (k = 3). Precision is the fraction of
  generated points inside the real manifold (fidelity), recall the fraction of real points inside the generated
  one (coverage). Identical sets give 1 and 1; sets far apart give 0 and 0.

References:
  Bińkowski, Sutherland, Arbel & Gretton, Demystifying MMD GANs, ICLR 2018.
  Kynkäänniemi, Karras, Laine, Lehtinen & Aila, Improved Precision and Recall Metric for Assessing Generative
  Models, NeurIPS 2019.
"""

import numpy as np

from jaxae.errors import require

CHUNK = 1000  # rows of a distance matrix computed at a time (memory: CHUNK x N float64)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """`(a b^T / F + 1)^3`: `[N, F], [M, F] -> [N, M]`."""
  return (a @ b.T / a.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """The unbiased estimate of MMD^2 between the sets `x: [m, F]` and `y: [n, F]` (m, n >= 2) under
  `polynomial_kernel`: the within-set means leave out the diagonal (each point with itself)."""
  m, n = len(x), len(y)
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
  within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
  return float(within_x + within_y - 2.0 * kxy.mean())


def kernel_distance(x, y, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """KID of features `x: [m, F]` against `y: [n, F]`: `(mean, standard deviation)` of `mmd2_unbiased` over
  `subsets` pairs of random subsets of `min(subset_size, m, n)` points each, drawn without replacement."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  size = min(subset_size, len(x), len(y))
  require(size >= 2, f'the kernel distance needs at least 2 points in each set, got {len(x)} and {len(y)}')
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
            for _ in range(subsets)]
  return float(np.mean(values)), float(np.std(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """`||a_i - b_j||^2`: `[N, F], [M, F] -> [N, M]` (clipped at 0 against rounding)."""
  return np.maximum(np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None] - 2.0 * a @ b.T, 0.0)


def knn_radii(a: np.ndarray, k: int) -> np.ndarray:
  """Squared distance of each point of `a: [N, F]` to its k-th nearest neighbour in `a`, itself left out: `[N]`."""
  require(len(a) > k, f'the k-NN manifold needs more than k = {k} points, got {len(a)}')
  radii = []
  for i in range(0, len(a), CHUNK):
    d = _squared_distances(a[i:i + CHUNK], a)
    radii.append(np.partition(d, k, axis=1)[:, k])  # the 0-th is the point itself (distance 0)
  return np.concatenate(radii)


def inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
  """Whether each of `points: [N, F]` lies in some ball of `centres: [M, F]` with squared radii `[M]`: `[N]`."""
  found = [np.any(_squared_distances(points[i:i + CHUNK], centres) <= radii[None], axis=1)
           for i in range(0, len(points), CHUNK)]
  return np.concatenate(found)


def precision_recall(real, generated, k: int = 3) -> tuple[float, float]:
  """`(precision, recall)` of `generated: [N, F]` against `real: [M, F]` features with k-NN manifolds."""
  real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
  precision = float(np.mean(inside(generated, real, knn_radii(real, k))))
  recall = float(np.mean(inside(real, generated, knn_radii(generated, k))))
  return precision, recall
