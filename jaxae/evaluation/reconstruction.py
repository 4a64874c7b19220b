"""Held-out reconstruction error of an autoencoder-family run: MSE per pixel and PSNR of the decoder means."""

import jax
import numpy as np

from jaxae import plotting, steps
from jaxae.errors import require


def check(model) -> None:
  require(hasattr(model, 'encode'), f"the reconstruction suite needs an encoder; {model.__name__.rsplit('.')[-1]} "
          'has none (a GAN only generates): use the samples suite')


def reconstruct(loaded, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """Decoder means of the codes of `x: [N, H, W, C]`, in batches: `[N, H, W, C]`."""
  decode = steps.bind(loaded.model.decode, loaded.config)
  fn = jax.jit(lambda v: decode(loaded.state, loaded.model.encode(loaded.state, v)))
  return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def run(loaded, key, **_):
  """`({'mse_per_pixel', 'psnr_db'}, {'reconstructions': Figure})` on the held-out images."""
  del key
  check(loaded.model)
  x = loaded.splits.eval['image']
  x_hat = reconstruct(loaded, x)
  mse = float(np.mean((x_hat - x) ** 2))
  return ({'mse_per_pixel': mse, 'psnr_db': float(10 * np.log10(1.0 / mse)), 'binarize': loaded.config['binarize']},
          {'reconstructions': plotting.reconstructions(x[:32], x_hat[:32])})
