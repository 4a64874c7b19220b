"""The kernel distance and precision / recall of the samples suite against brute-force computations and known
cases."""

import itertools

import numpy as np
import pytest

from jaxae.errors import UserError
from jaxae.evaluation import features


def brute_mmd2(x, y):
  k = lambda a, b: (np.dot(a, b) / len(a) + 1.0) ** 3  # noqa: E731
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  xy = sum(k(a, b) for a in x for b in y) / (m * n)
  return xx + yy - 2 * xy


def brute_precision_recall(real, generated, k):
  def radii(a):
    return [sorted(np.sum((a[i] - p) ** 2) for j, p in enumerate(a) if j != i)[k - 1] for i in range(len(a))]

  def share(points, centres, r):
    return np.mean([any(np.sum((p - c) ** 2) <= ri for c, ri in zip(centres, r, strict=True)) for p in points])

  return share(generated, real, radii(real)), share(real, generated, radii(generated))


def test_the_unbiased_mmd_is_the_double_sum_without_the_diagonal():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 1.2, size=(9, 4))
  np.testing.assert_allclose(features.mmd2_unbiased(x, y), brute_mmd2(x, y), rtol=1e-10)


def test_kid_is_about_zero_for_one_distribution_and_grows_with_a_shift():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
  same, same_std = features.kernel_distance(a, b, subsets=20, subset_size=300)
  shifted, _ = features.kernel_distance(a, b + 0.5, subsets=20, subset_size=300)
  assert abs(same) < 3 * same_std / np.sqrt(20) + 1e-3 and shifted > 50 * abs(same)
  assert features.kernel_distance(a, b, subsets=3, seed=4) == features.kernel_distance(a, b, subsets=3, seed=4)
  with pytest.raises(UserError, match='at least 2 points'):
    features.kernel_distance(a[:1], b)


def test_precision_and_recall_match_brute_force_and_the_known_cases():
  rng = np.random.default_rng(2)
  real, generated = rng.normal(size=(40, 3)), rng.normal(0.7, 0.6, size=(30, 3))
  np.testing.assert_allclose(features.precision_recall(real, generated, k=3),
                             brute_precision_recall(real, generated, 3), rtol=1e-12)
  assert features.precision_recall(real, real) == (1.0, 1.0)
  assert features.precision_recall(real, real + 100.0) == (0.0, 0.0)
  wide = rng.normal(0, 3, size=(400, 2))  # generated points covering only the middle of the real set: faithful,
  narrow = rng.normal(0, 0.5, size=(400, 2))  # not covering
  precision, recall = features.precision_recall(wide, narrow)
  assert precision > 0.9 and recall < 0.5


def test_the_k_nn_radius_leaves_the_point_itself_out():
  a = np.array([[0.0], [1.0], [3.0], [7.0]])
  np.testing.assert_array_equal(features.knn_radii(a, 1), [1.0, 1.0, 4.0, 16.0])
  np.testing.assert_array_equal(features.knn_radii(a, 3), [49.0, 36.0, 16.0, 49.0])
  with pytest.raises(UserError, match='more than k = 3 points'):
    features.knn_radii(a[:3], 3)
