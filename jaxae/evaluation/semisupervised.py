"""Semi-supervised classification: a run's held-out error against classifiers that see only its labelled images.

For a family that can `classify` (the semi-supervised AAE), trained with `labels_per_class` = N (the other
training images unlabelled): the held-out error of its classifier, beside logistic regression and 5-NN
(`jaxae.evaluation.probe`) fitted on the same N per class labelled images alone, on their pixels and on their
PCA codes (PCA fitted on every training image, labelled or not: the unsupervised baseline that also uses the
unlabelled pool). Makhzani et al. report 1.90% (± 0.10) with 100 labels and 60,000 unlabelled MNIST images.

References:
  Makhzani, Shlens, Jaitly, Goodfellow & Frey, Adversarial Autoencoders, ICLR workshop 2016, Sec. 6.
"""

import numpy as np

from jaxae import models, pca, steps
from jaxae.errors import require
from jaxae.evaluation import common, probe

HEADLINE = {'error': 'fraction', 'pixels_logistic_error': 'fraction', 'pixels_knn_error': 'fraction',
            'pca_logistic_error': 'fraction', 'pca_knn_error': 'fraction'}
PCA_COMPONENTS = 50


def check(loaded) -> None:
  require(models.can(loaded.model, 'classify'), f'the semisupervised suite needs a family that classifies; '
          f"{common.family(loaded.model)} does not: use an ssaae run")


def run(loaded, key, **_):
  """`({error, labelled, pixels_/pca_ logistic/knn errors, pca_components}, {})` on the held-out images."""
  del key
  train, held_out = loaded.splits.train, loaded.splits.eval
  labelled = np.asarray(train['label']) >= 0
  require(labelled.sum() > probe.KNN_K, f'the run has {labelled.sum()} labelled training images: the baselines '
          f'need more than {probe.KNN_K}')
  classify = steps.bind(loaded.model.classify, loaded.config)
  predicted = common.batched(lambda v: classify(loaded.state, v), np.asarray(held_out['image'], np.float32))
  y, y_eval = np.asarray(train['label'])[labelled], np.asarray(held_out['label'])
  x = np.asarray(train['image'], np.float32)
  flat = lambda a: np.asarray(a, np.float32).reshape(len(a), -1)
  metrics = {'error': float(np.mean(predicted != y_eval)), 'labelled': int(labelled.sum()),
             'unlabelled': int((~labelled).sum())}
  k = min(PCA_COMPONENTS, int(labelled.sum()) - 1, flat(x).shape[1])
  p = pca.fit(x, k)
  codes = {'pixels': (flat(x[labelled]), flat(held_out['image'])),
           'pca': tuple(common.batched(lambda v: pca.encode(p, v), a) for a in (x[labelled], held_out['image']))}
  for name, (z, z_eval) in codes.items():
    linear, knn = probe.probes(z, y, z_eval, y_eval)
    metrics.update({f'{name}_logistic_error': 1.0 - linear, f'{name}_knn_error': 1.0 - knn})
  return {**metrics, 'pca_components': k}, {}
