"""Anomaly detection: a run trained on some classes scores held-out images; AUROC per unseen class.

Train with `--set train_classes=0` (the evaluation set keeps every class). The
score is the reconstruction error (MSE per image of the decoder mean) for the
autoencoders and the -ELBO for a VAE (one z draw, analytic KL): high for
images unlike the training class. For each class the run never saw, the AUROC
separates its held-out images (positives) from the held-out images of the
training classes (negatives); `auroc_mean` averages over those classes.

References:
  Sakurada & Yairi, Anomaly Detection Using Autoencoders with Nonlinear
  Dimensionality Reduction, MLSDA 2014.
  An & Cho, Variational Autoencoder based Anomaly Detection using
  Reconstruction Probability, 2015.
"""

import numpy as np
from scipy.stats import rankdata

from jaxae import models, plotting
from jaxae.errors import require
from jaxae.evaluation import common

HEADLINE = {'auroc_mean': 'AUROC'}  # the comparison table's columns (`jaxae.evaluation.headline`)


def auroc(positive, negative) -> float:
  """Area under the ROC curve: P(a positive scores above a negative), ties counting one half
  (the Mann-Whitney U statistic over `len(positive) * len(negative)`)."""
  positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
  require(len(positive) > 0 and len(negative) > 0, 'AUROC needs at least one positive and one negative')
  ranks = rankdata(np.concatenate([positive, negative]))
  n_pos, n_neg = len(positive), len(negative)
  return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(positive, negative) -> tuple[np.ndarray, np.ndarray]:
  """`(false positive rates, true positive rates)` at every distinct threshold, from (0, 0) to (1, 1)."""
  scores = np.concatenate([positive, negative])
  is_pos = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
  order = np.argsort(-scores, kind='stable')
  scores, is_pos = scores[order], is_pos[order]
  last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last index of each distinct score
  tp, fp = np.cumsum(is_pos)[last], np.cumsum(1 - is_pos)[last]
  return np.r_[0.0, fp / len(negative)], np.r_[0.0, tp / len(positive)]


def scores(loaded, x, key) -> tuple[np.ndarray, str]:
  """`(per-image anomaly scores [N], what they are)`: -ELBO for a VAE, else reconstruction MSE."""
  if models.can(loaded.model, 'elbo'):
    fn = common.program(loaded, 'negative_elbo')
    return common.batched(lambda v: fn(loaded.state, v, key), x), '-ELBO (nats)'
  x_hat = common.reconstruct(loaded, x)
  return np.mean((x_hat - x).reshape(len(x), -1) ** 2, axis=-1), 'reconstruction MSE'


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'anomaly')
  require(loaded.config.get('train_classes'), 'the anomaly suite needs a run trained on some classes only (the '
          'normal ones): train it with e.g. --set train_classes=0')


def run(loaded, key, **_):
  """`({auroc_mean, auroc_class_<c> for each unseen class c, score, normal_classes}, {'roc': Figure})`."""
  check(loaded)
  normal = tuple(loaded.config['train_classes'])
  x, y = loaded.splits.eval['image'], loaded.splits.eval['label']
  s, what = scores(loaded, x, key)
  is_normal = np.isin(y, normal)
  anomalies = sorted(set(np.unique(y).tolist()) - set(normal))
  require(is_normal.any() and anomalies, f'the held-out set needs images of the normal classes {normal} and of '
          'other classes; use a holdout with both')
  metrics, curves = {'score': what, 'normal_classes': ','.join(map(str, normal))}, {}
  for c in anomalies:
    auc = auroc(s[y == c], s[is_normal])
    metrics[f'auroc_class_{c}'] = auc
    curves[f'class {c}'] = (*roc_curve(s[y == c], s[is_normal]), auc)
  metrics['auroc_mean'] = float(np.mean([metrics[f'auroc_class_{c}'] for c in anomalies]))
  title = f"{common.family(loaded.model)} trained on class {', '.join(map(str, normal))}: ROC by {what}"
  return metrics, {'roc': plotting.roc_curves(curves, title)}


