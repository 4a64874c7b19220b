"""Held-out reconstruction error of an autoencoder-family run: MSE per pixel and PSNR of the decoder means."""

from jaxae import plotting
from jaxae.evaluation import common

HEADLINE = {'mse_per_pixel': 'MSE/pixel', 'psnr_db': 'dB'}  # the comparison table's columns


def check(loaded) -> None:
  common.require_encoder(loaded.model, 'reconstruction')


def run(loaded, key, **_):
  """`({'mse_per_pixel', 'psnr_db', 'binarize'}, {'reconstructions': Figure})` on the held-out images."""
  del key
  x = loaded.splits.eval['image']
  x_hat = common.reconstruct(loaded, x)
  mse = common.mse_per_pixel(x_hat, x)
  return ({'mse_per_pixel': mse, 'psnr_db': common.psnr_db(mse), 'binarize': loaded.config['binarize']},
          {'reconstructions': plotting.reconstructions(x[:32], x_hat[:32])})
