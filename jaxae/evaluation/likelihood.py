"""Likelihood of a VAE-family run: the held-out -ELBO and the IWAE bound with K samples as the NLL estimate.

`iwae_nll` is -log of the K-sample importance-weighted bound (Burda et al.
2016), K = 5,000 by default: an upper bound on the held-out NLL that tightens
with K. The examples go `batch_size` at a time and each batch draws its K
samples `chunk` at a time (a running logsumexp), so memory is bounded by
`batch_size * chunk` decoded images whatever K and the test-set size. The
decoder passes are matmul work: the suite reports their GFLOP/s, the fraction
of this device's matmul peak, and the bytes XLA allocates for one batch.
Every number states the binarization of the evaluation images: NLLs of grey
levels under a Bernoulli decoder (plain binary cross-entropy) are not
comparable with NLLs of binarized MNIST.

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

import functools
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxae import models, roofline, steps
from jaxae.errors import require
from jaxae.evaluation import common

HEADLINE = {'nelbo': 'nats', 'iwae_nll': 'nats'}  # the comparison table's columns

ROWS = 32_768  # decoded images per chunk (batch_size * chunk): about 100 MB at 784 pixels


def check(loaded) -> None:
  model = loaded.model
  require(models.can(model, 'elbo'),
          f"the likelihood suite needs a model with a likelihood ({', '.join(models.with_capability('elbo'))}); "
          f'{common.family(model)} has none: '
          'use the reconstruction or samples suite')


def _padded(x, batch_size: int):
  n = len(x)
  pad = -n % batch_size
  return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x


def iwae_nll(loaded, x, key, num_samples: int, *, batch_size: int = 100, progress: bool = False) -> dict:
  """Per-example K-sample IWAE NLL of `x` with its cost: `{'nll': [N], 'seconds', 'flops', 'memory_bytes'}`.

  Batch b draws from `fold_in(key, b)`. `flops` counts the decoder's and
  encoder's matmul work (XLA's count for one loop-free pass, times the passes).
  """
  require(num_samples >= 1, f'the IWAE needs K >= 1 importance samples, got {num_samples}')
  model, config, state = loaded.model, loaded.config, loaded.state
  batch_size = min(batch_size, len(x))
  chunk = max(1, min(num_samples, ROWS // batch_size))
  nll_fn = steps.bind(model.importance_weighted_nll, config)
  compiled = jax.jit(lambda s, v, k: nll_fn(s, v, k, num_samples, chunk)).lower(
      state, x[:batch_size], key).compile()
  weights = functools.partial(model.log_weights, likelihood=config['likelihood'], prior=config.get('prior', 'gaussian'))
  one_chunk = jax.jit(lambda s, v, k: weights(s.params, s.apply_fn, v, k, chunk)).lower(
      state, x[:batch_size], key).compile()
  n_chunks = -(-num_samples // chunk)
  xs = _padded(x, batch_size)
  t0 = time.perf_counter()
  out = [compiled(state, xs[i:i + batch_size], jax.random.fold_in(key, b))
         for b, i in enumerate(tqdm(range(0, len(xs), batch_size), disable=not progress, desc='IWAE'))]
  nll = np.concatenate(jax.device_get(out))[:len(x)]
  seconds = time.perf_counter() - t0
  return {'nll': nll, 'seconds': seconds, 'flops': roofline.flops(one_chunk) * n_chunks * len(xs) // batch_size,
          'memory_bytes': roofline.compiled_memory_bytes(compiled)}


def run(loaded, key, *, iwae_samples: int = 5000, progress: bool = False, **_):
  """`({nelbo, iwae_nll, their standard errors, iwae_samples, iwae_seconds, iwae_gflop_per_s,
  iwae_peak_fraction, iwae_memory_bytes, binarize, likelihood}, {})` on the held-out images."""
  x = loaded.splits.eval['image']
  elbo_key, iwae_key = jax.random.split(key)
  neg_elbo = common.program(loaded, 'negative_elbo')
  nelbo = common.batched(lambda v: neg_elbo(loaded.state, v, elbo_key), x)
  iw = iwae_nll(loaded, x, iwae_key, iwae_samples, progress=progress)
  peak = roofline.matmul_peak(loaded.config['precision'])
  gflop_per_s = iw['flops'] / iw['seconds'] / 1e9
  sem = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))  # noqa: E731
  return {'nelbo': float(np.mean(nelbo)), 'nelbo_sem': sem(nelbo), 'iwae_nll': float(np.mean(iw['nll'])),
          'iwae_nll_sem': sem(iw['nll']), 'iwae_samples': iwae_samples, 'iwae_seconds': iw['seconds'],
          'iwae_gflop_per_s': gflop_per_s, 'iwae_peak_fraction': gflop_per_s / peak,
          'iwae_memory_bytes': iw['memory_bytes'], 'binarize': loaded.config['binarize'],
          'likelihood': loaded.config['likelihood']}, {}
