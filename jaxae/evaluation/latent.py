"""Latent space: held-out codes by label, the decoded 2-D manifold, and interpolations between test images.

- Codes: a scatter of the held-out codes coloured by label; 2-D codes as they
  are (over the prior's density where the family has one), larger ones
  projected on their first two principal components (jaxae's PCA of the codes).
- Manifold (2-D codes only): the decoder over a 15 x 15 grid; for a standard
  Gaussian prior (VAE, IWAE, AAE with prior=gaussian) at the Gaussian quantiles
  5%..95% (Kingma & Welling 2014, Fig. 4), else at the same quantiles of the
  held-out codes.
- Interpolation: decodes of (1 - t) z_a + t z_b, t in [0, 1], between pairs of
  held-out images of different classes.
"""

import numpy as np
from jax.scipy.special import ndtri

from jaxae import models, pca, plotting, steps
from jaxae.evaluation import common

HEADLINE: dict[str, str] = {}  # figures only: no column in the comparison table

GRID = 15
STEPS = 10
PAIRS = 6


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'latent')


def gaussian_prior(loaded) -> bool:
  return models.can(loaded.model, 'gaussian_prior') or loaded.config.get('prior') == 'gaussian'


def manifold(loaded, z_held_out) -> np.ndarray:
  """Decodes of a `GRID x GRID` grid of 2-D codes: `[GRID * GRID, H, W, C]`, rows top to bottom by z_2."""
  q = np.linspace(0.05, 0.95, GRID)
  if gaussian_prior(loaded):
    axes = [np.asarray(ndtri(q))] * 2
  else:
    axes = [np.quantile(z_held_out[:, i], q) for i in range(2)]
  z1, z2 = np.meshgrid(axes[0], axes[1][::-1])
  return common.decode(loaded, np.stack([z1.ravel(), z2.ravel()], axis=-1))


def pairs(labels, n: int = PAIRS) -> list[tuple[int, int]]:
  """`n` index pairs (i, j) of held-out images with different labels, deterministic."""
  out: list[tuple[int, int]] = []
  i = 0
  while len(out) < n and i + 1 < len(labels):
    j = next((j for j in range(i + 1, len(labels)) if labels[j] != labels[i]), None)
    if j is None:
      break
    out.append((i, j))
    i = j + 1
  return out


def interpolations(loaded, z, labels) -> np.ndarray:
  """`[pairs * STEPS, H, W, C]`: each row decodes a straight line between two held-out codes."""
  t = np.linspace(0, 1, STEPS)[:, None]
  path = [(1 - t) * z[i] + t * z[j] for i, j in pairs(labels)]
  return common.decode(loaded, np.concatenate(path))


def run(loaded, key, **_):
  """`({latent_dim, projection, projection_explained_variance}, {'codes', 'interpolation', ['manifold']})`."""
  del key
  x, labels = loaded.splits.eval['image'], loaded.splits.eval['label']
  z = common.encode(loaded, x)
  k = z.shape[1]
  metrics = {'latent_dim': k, 'projection': 'none' if k == 2 else 'pca'}
  figures = {'interpolation': plotting.samples(interpolations(loaded, z, labels), cols=STEPS,
                                               title='interpolation between held-out codes')}
  if k == 2:
    density = steps.bind(loaded.model.prior_log_density, loaded.config) if models.can(loaded.model, 'prior_density') \
        else None
    figures['codes'] = plotting.codes(z, labels, density,
                                      title='held-out codes by label')
    figures['manifold'] = plotting.samples(manifold(loaded, z), cols=GRID, title='decoded 2-D latent grid')
  else:
    p = pca.fit(z, 2)
    metrics['projection_explained_variance'] = float(np.sum(p.explained_variance_ratio))
    figures['codes'] = plotting.codes(np.asarray(pca.encode(p, z)), labels,
                                      title=f'held-out codes by label (first 2 of {k} PCs)')
  return metrics, figures


