"""Compression: does the autoencoder beat PCA at the same code size?

Held-out MSE per pixel of the run's reconstructions (decoder means; a VAE
through its posterior mean) against PCA with as many components as the run
has code units, fitted on the run's training images. Both reconstructions
are clipped to the pixel range [0, 1], as decoder means are. The optimum of a
linear autoencoder is PCA's subspace (Baldi & Hornik 1989): a linear tied
autoencoder (`--model tied_ae --set hidden= --set likelihood=gaussian`) should
reach `mse_vs_pca` close to 1; a nonlinear one can go below it.
"""

import numpy as np

from jaxae import pca, plotting
from jaxae.evaluation import common

HEADLINE = {'mse_per_pixel': 'MSE/pixel', 'mse_vs_pca': 'x PCA'}  # the comparison table's columns


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'compression')


def pca_reconstruct(x_train, x, k: int) -> tuple[np.ndarray, float]:
  """`(reconstructions of x clipped to [0, 1], explained variance ratio)` of a k-component PCA of `x_train`."""
  p = pca.fit(x_train, k)
  x_hat = common.batched(lambda v: pca.reconstruct(p, v), x)
  return np.clip(x_hat, 0.0, 1.0), float(np.sum(p.explained_variance_ratio))


def run(loaded, key, **_):
  """`({latent_dim, mse_per_pixel, pca_mse_per_pixel, mse_vs_pca, pca_explained_variance}, {'vs_pca'})`."""
  del key
  k = loaded.config['latent_dim']
  x = loaded.splits.eval['image']
  x_hat = common.reconstruct(loaded, x)
  x_pca, explained = pca_reconstruct(loaded.splits.train['image'], x, k)
  mse, mse_pca = common.mse_per_pixel(x_hat, x), common.mse_per_pixel(x_pca, x)
  name = common.family(loaded.model)
  figure = plotting.image_rows({'originals': x[:16], f'{name} ({k}-d code)': x_hat[:16], f'PCA ({k} components)':
                                x_pca[:16]})
  return ({'latent_dim': k, 'mse_per_pixel': mse, 'pca_mse_per_pixel': mse_pca, 'mse_vs_pca': mse / mse_pca,
           'pca_explained_variance': explained, 'binarize': loaded.config['binarize']}, {'vs_pca': figure})
