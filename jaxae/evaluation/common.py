"""Shared helpers of the evaluation suites: batched application, codes and reconstructions of a loaded run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import models, steps
from jaxae.errors import require


def family(model) -> str:
  """The family's name, e.g. 'vae'."""
  return model.__name__.rsplit('.', 1)[-1]


def require_encoder(model, suite: str) -> None:
  """`UserError` unless the family has an encoder and a decoder (a GAN only generates)."""
  require(models.can(model, 'encode'),
          f'the {suite} suite needs an encoder; {family(model)} has none (a GAN only generates): '
          'use the samples suite')


def batched(fn, x, batch_size: int = 1000) -> np.ndarray:
  """`fn` over `x: [N, ...]` in batches of `batch_size` (the last one padded, so `fn` compiles once): NumPy."""
  n = len(x)
  out = []
  for i in range(0, n, batch_size):
    b = np.asarray(x[i:i + batch_size])
    pad = batch_size - len(b) if n > batch_size else 0
    b = np.concatenate([b, np.repeat(b[-1:], pad, axis=0)]) if pad else b
    out.append(np.asarray(fn(jnp.asarray(b)))[:len(b) - pad])
  return np.concatenate(out)


VERBS = {'encode': ('encode',), 'decode': ('decode',), 'reconstruct': ('encode', 'decode'),
         'negative_elbo': ('negative_elbo',)}  # a program's name: the family functions it calls


@functools.cache
def _jitted(model, verb: str, hp: tuple):
  """`model`'s `verb` with hyperparameters `hp`, jitted once: the state is an argument, so every call on a run
  (and every run of that family and settings) reuses one program per shape."""
  fns = [steps.bind(getattr(model, name), dict(hp)) for name in VERBS[verb]]
  if verb == 'reconstruct':
    enc, dec = fns
    return jax.jit(lambda s, v: dec(s, enc(s, v)))
  return jax.jit(fns[0])


def program(loaded, verb: str):
  """The compiled `verb` of a loaded run (a key of VERBS): `(state, x) -> codes or images`, and
  `(state, x, key) -> [B]` for 'negative_elbo'."""
  model = loaded.model
  names = sorted(set().union(*(steps.hyperparameters(getattr(model, f)) for f in VERBS[verb])))
  return _jitted(model, verb, tuple((k, loaded.config[k]) for k in names))


def encode(loaded, x, batch_size: int = 1000) -> np.ndarray:
  """Codes `[N, latent_dim]` of `x: [N, H, W, C]` (a VAE's posterior means)."""
  fn = program(loaded, 'encode')
  return batched(lambda v: fn(loaded.state, v), x, batch_size)


def decode(loaded, z, batch_size: int = 1000) -> np.ndarray:
  """Images `[N, H, W, C]` in [0, 1] (decoder means) of codes `z: [N, latent_dim]`."""
  fn = program(loaded, 'decode')
  return batched(lambda v: fn(loaded.state, v), np.asarray(z, np.float32), batch_size)


def reconstruct(loaded, x, batch_size: int = 1000) -> np.ndarray:
  """Decoder means of the codes of `x: [N, H, W, C]`: `[N, H, W, C]`."""
  fn = program(loaded, 'reconstruct')
  return batched(lambda v: fn(loaded.state, v), x, batch_size)


def mse_per_pixel(x_hat, x) -> float:
  return float(np.mean((np.asarray(x_hat, np.float64) - np.asarray(x, np.float64)) ** 2))


def psnr_db(mse: float) -> float:
  """Peak signal-to-noise ratio of images in [0, 1]: `10 log10(1 / MSE)`."""
  return float(10 * np.log10(1.0 / mse))
