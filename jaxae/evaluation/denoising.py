"""Denoising: PSNR and MSE of corrupted held-out images and of the run's reconstructions of them.

For each corruption in `NOISES` (Gaussian sigma 0.1, 0.3, 0.5 unclipped, as the
denoising autoencoder trains, masking noise zeroing 25% of the pixels, and
salt-and-pepper noise setting 10% of them to 0 or 1) the
held-out images are corrupted with a fixed key, encoded and decoded; PSNR and
MSE are measured against the clean images. Compare a plain autoencoder with a
denoising one (`--model dae`) on the same data.

References:
  Vincent et al., Extracting and Composing Robust Features with Denoising
  Autoencoders, ICML 2008.
"""

import jax
import numpy as np

from jaxae import corruption, plotting
from jaxae.evaluation import common

HEADLINE = {'gaussian0.3_psnr_db': 'dB', 'masking0.25_psnr_db': 'dB'}  # the comparison table's columns

_corrupt = jax.jit(corruption.corrupt, static_argnums=2)  # one program per kind: the level is an argument
NOISES = (('gaussian', 0.1), ('gaussian', 0.3), ('gaussian', 0.5), ('masking', 0.25), ('salt_and_pepper', 0.1))


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'denoising')


def run(loaded, key, **_):
  """Per corruption `{kind}{level}`: `_noisy_psnr_db` and `_psnr_db`, their MSEs under 'mse'; a figure each."""
  x = loaded.splits.eval['image']
  metrics, figures = {'binarize': loaded.config['binarize'], 'mse': {}}, {}
  for i, (kind, level) in enumerate(NOISES):
    noisy = np.asarray(_corrupt(x, jax.random.fold_in(key, i), kind, level))
    denoised = common.reconstruct(loaded, noisy)
    name = f'{kind}{level:g}'
    noisy_mse, mse = common.mse_per_pixel(noisy, x), common.mse_per_pixel(denoised, x)
    metrics.update({f'{name}_noisy_psnr_db': common.psnr_db(noisy_mse), f'{name}_psnr_db': common.psnr_db(mse)})
    metrics['mse'][name] = {'noisy': noisy_mse, 'denoised': mse}
    figures[name] = plotting.image_rows({f'{kind} noise {level:g}': np.clip(noisy[:16], 0, 1),
                                         f'denoised by {common.family(loaded.model)}': denoised[:16],
                                         'clean': x[:16]})
  return metrics, figures
