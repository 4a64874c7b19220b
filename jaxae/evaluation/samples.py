"""Sample quality for every generative family: classifier Fréchet distance, class histogram, Parzen window.

- Classifier Fréchet distance: `||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`
  between Gaussians fitted to classifier features (`jaxae.evaluation.classifier`) of
  generated and held-out images. Named for what it is: not Inception FID.
- Class histogram: the classifier's predicted classes of the samples; a collapsed
  generator puts most of its mass on few classes.
- Per class: the Fréchet distance of the samples of each class (those asked for, for a conditional family;
  those the classifier assigns to it, otherwise) to the training images of that class; for a conditional
  family also the fraction of each class's samples the classifier assigns to the class asked for.
- Kernel distance (KID) and precision / recall (k = 3) of the samples' classifier features against the held-out
  images' (`jaxae.evaluation.features`): unbiased at small sample counts, and fidelity apart from coverage.
- Parzen window: `log p(x) = logsumexp_s(-||x - s||^2 / (2 sigma^2)) - log S - D/2 log(2 pi sigma^2)`
  over S samples, the bandwidth chosen on a validation split; the estimate the GAN
  and AAE papers report, with its standard error.

References:
  Heusel et al., GANs Trained by a Two Time-Scale Update Rule (FID), NeurIPS 2017.
  Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014, Sec. 5.
  Breuleux, Bengio & Vincent, Quickly Generating Representative Samples from
  an RBM-Derived Process, Neural Computation 2011 (the Parzen estimate).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import models, plotting, steps
from jaxae.errors import require
from jaxae.evaluation import classifier, common, features

HEADLINE = {'classifier_fd': 'FD', 'classifier_fd_train_images': 'FD floor', 'kid': 'KID', 'precision': 'fraction',
            'recall': 'fraction', 'histogram_tv': 'TV', 'parzen_ll': 'nats', 'class_accuracy': 'fraction',
            'class_accuracy_min': 'fraction'}
# the comparison table's columns (`jaxae.evaluation.headline`); class_accuracy: conditional families only

SIGMAS = tuple(np.round(np.logspace(np.log10(0.05), np.log10(1.0), 14), 4))


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
  """Fréchet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2), in float64.

  `tr((S_1 S_2)^(1/2))` is computed as `tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2))`, a symmetric
  eigenproblem, so it stays real and stable for singular covariances.
  """
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  w, v = np.linalg.eigh(cov1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ cov2 @ root1), 0, None)).sum()
  return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def gaussian_fit(features) -> tuple[np.ndarray, np.ndarray]:
  """`(mean [F], covariance [F, F])` of `features: [N, F]` (unbiased), in float64."""
  f = np.asarray(features, np.float64)
  return f.mean(axis=0), np.cov(f, rowvar=False)


def class_histogram(predicted, n_classes: int) -> np.ndarray:
  """Fraction of samples per predicted class: `[n_classes]`, summing to one."""
  return np.bincount(np.asarray(predicted), minlength=n_classes)[:n_classes] / len(predicted)


@functools.partial(jax.jit, static_argnames=('chunk',))
def _parzen(samples: jax.Array, x: jax.Array, sigma, chunk: int) -> jax.Array:
  """Per-example Parzen log-density of `x: [N, D]` over `samples: [S, D]` (S a multiple of `chunk`).

  A running logsumexp over chunks of samples: memory O(N * chunk), not O(N * S).
  """
  n_chunks = samples.shape[0] // chunk
  x_sq = jnp.sum(jnp.square(x), axis=-1)

  def body(running, s):
    sq = x_sq[:, None] + jnp.sum(jnp.square(s), axis=-1)[None] - 2.0 * x @ s.T  # [N, chunk]
    return jnp.logaddexp(running, jax.nn.logsumexp(-jnp.maximum(sq, 0.0) / (2 * sigma**2), axis=-1)), None

  running, _ = jax.lax.scan(body, jnp.full(x.shape[0], -jnp.inf), samples.reshape(n_chunks, chunk, -1))
  d = x.shape[-1]
  return running - jnp.log(samples.shape[0]) - 0.5 * d * jnp.log(2 * jnp.pi * sigma**2)


def parzen_log_likelihood(samples, x, sigma: float, batch_size: int = 500, chunk: int = 1000) -> np.ndarray:
  """Parzen-window log-density `[N]` (nats) of each row of `x: [N, ...]` under isotropic Gaussians
  of std `sigma` centred on `samples: [S, ...]`.

  Memory is bounded by `batch_size * chunk` distances whatever N and S.
  """
  s = np.asarray(samples, np.float32).reshape(len(samples), -1)
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  chunk = next(c for c in range(min(chunk, len(s)), 0, -1) if len(s) % c == 0)  # the largest that divides S
  on_device = jnp.asarray(s)
  parts = [_parzen(on_device, jnp.asarray(x[i:i + batch_size]), jnp.float32(sigma), chunk)
           for i in range(0, len(x), batch_size)]
  return np.concatenate([np.asarray(p) for p in parts])


def choose_bandwidth(samples, x_valid, sigmas=SIGMAS) -> tuple[float, dict]:
  """The sigma of `sigmas` with the highest mean Parzen log-likelihood on `x_valid`, and every score."""
  scores = {float(s): float(parzen_log_likelihood(samples, x_valid, s).mean()) for s in sigmas}
  return max(scores, key=lambda s: scores[s]), scores


def parzen(samples, x_valid, x_test, sigmas=SIGMAS) -> dict:
  """Parzen estimate on `x_test` with the bandwidth chosen on `x_valid`: mean, standard error, sigma."""
  sigma, scores = choose_bandwidth(samples, x_valid, sigmas)
  ll = parzen_log_likelihood(samples, x_test, sigma)
  return {'parzen_ll': float(ll.mean()), 'parzen_se': float(ll.std(ddof=1) / np.sqrt(len(ll))),
          'parzen_sigma': sigma, 'parzen_valid_scores': scores}


def check(loaded) -> None:
  require(models.can(loaded.model, 'sample'), f'the samples suite needs a generative family; '
          f'{common.family(loaded.model)} has no sample(): use a vae, aae or GAN run')


def generate(loaded, key, n: int, batch_size: int = 1000, labels=None) -> np.ndarray:
  """`n` samples `[n, H, W, C]` from a loaded run, in batches (batch b from `fold_in(key, b)`); a conditional
  family's of the classes `labels: [n]`."""
  sample = jax.jit(steps.bind(loaded.model.sample, loaded.config), static_argnums=2)
  extra = lambda i: () if labels is None else (jnp.asarray(labels[i:i + batch_size]),)
  return np.concatenate([np.asarray(sample(loaded.state, jax.random.fold_in(key, b), min(batch_size, n - i),
                                           *extra(i))) for b, i in enumerate(range(0, n, batch_size))])


def requested_labels(n: int, num_classes: int) -> np.ndarray:
  """The classes a conditional family is asked for: `n // K` of each in turn (n a multiple of K), `[n]`."""
  require(n % num_classes == 0, f'num_samples={n} is not a multiple of the {num_classes} classes: give one that is')
  return np.repeat(np.arange(num_classes, dtype=np.int32), n // num_classes)


def per_class_fd(clf, x, classes, train, n_classes: int) -> dict:
  """The Fréchet distance of the samples `x` of each class (`classes: [n]`) to the training images of that
  class: `[n_classes]` (None for a class with fewer than two samples)."""
  features, train_features = classifier.features(clf, x), classifier.features(clf, train['image'])
  fd = [frechet_distance(*gaussian_fit(features[classes == c]), *gaussian_fit(train_features[train['label'] == c]))
        if (classes == c).sum() > 1 else None for c in range(n_classes)]
  return {'per_class_fd': fd}


def run(loaded, key, *, num_samples: int = 10_000, classifier_epochs: int = 20, num_valid: int = 1000, **_):
  """Sample quality of a loaded run against its held-out images.

  Returns `(metrics, figures)`: the classifier Fréchet distance of the samples and, as
  its floor, of as many training images as samples (as many as there are, if fewer),
  both against the held-out set, in the feature space of the dataset's cached classifier
  (`classifier.cached`: its hash, the data's hash and its held-out accuracy are reported);
  the samples' class histogram and that of the held-out labels; and the Parzen
  log-likelihood of the held-out set (bandwidth chosen on `num_valid` training images,
  as the GAN paper chose it on a validation split, never on the test images).
  """
  check(loaded)
  _, k_sample, k_valid = jax.random.split(key, 3)
  train, test = loaded.splits
  conditional = models.can(loaded.model, 'conditional')
  labels = requested_labels(num_samples, loaded.config['num_classes']) if conditional else None
  x = generate(loaded, k_sample, num_samples, labels=labels)
  valid = np.random.default_rng(np.asarray(jax.random.key_data(k_valid))[-1]).permutation(len(train['image']))
  metrics = {'num_samples': num_samples, 'binarize': loaded.config['binarize'],
             **parzen(x, train['image'][valid[:num_valid]], test['image'])}
  if labels is None:
    figures = {'samples': plotting.samples(x[:64], title=f"{loaded.config['model']} samples")}
  else:  # ten of each class asked for, a class per row
    rows = x.reshape(loaded.config['num_classes'], -1, *x.shape[1:])[:, :10].reshape(-1, *x.shape[1:])
    figures = {'samples': plotting.samples(rows, cols=10, title=f"{loaded.config['model']} samples, a class per row")}
  if (train['label'] >= 0).all():
    clf = classifier.cached(train['image'], train['label'], test['image'], test['label'], epochs=classifier_epochs)
    n_classes = clf.net.n_classes
    test_features = classifier.features(clf, test['image'])
    held_out = gaussian_fit(test_features)
    reference = train['image'][valid[:num_samples]]
    predicted = classifier.predict(clf, x)
    hist = class_histogram(predicted, n_classes)
    metrics.update(per_class_fd(clf, x, predicted if labels is None else labels, train, n_classes))
    if conditional:
      accuracy = [float(np.mean(predicted[labels == c] == c)) for c in range(loaded.config['num_classes'])]
      metrics.update(per_class_accuracy=accuracy, class_accuracy=float(np.mean(accuracy)),
                     class_accuracy_min=float(np.min(accuracy)))
    sample_features = classifier.features(clf, x)
    kid, kid_std = features.kernel_distance(sample_features, test_features)
    precision, recall = features.precision_recall(test_features, sample_features)
    metrics.update(
        classifier_hash=clf.hash, data_hash=clf.data_hash, classifier_accuracy=clf.accuracy,
        classifier_fd=frechet_distance(*gaussian_fit(sample_features), *held_out), kid=kid, kid_std=kid_std,
        precision=precision, recall=recall,
        classifier_fd_train_images=frechet_distance(*gaussian_fit(classifier.features(clf, reference)), *held_out),
        floor_images=len(reference), class_histogram=hist.tolist(),
        held_out_histogram=class_histogram(test['label'], n_classes).tolist(),
        histogram_tv=float(0.5 * np.abs(hist - class_histogram(test['label'], n_classes)).sum()))
    figures['class_histogram'] = plotting.histogram(hist, np.asarray(metrics['held_out_histogram']))
  return metrics, figures
