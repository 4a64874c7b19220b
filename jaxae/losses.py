"""Pure, per-example, numerically stable losses.

Every function returns one value per example (shape `[B]`, summed over the
event axes); the caller reduces over the batch. Likelihood terms are negative
log-likelihoods in nats.
"""

import jax
import jax.numpy as jnp

from jaxae import likelihoods
from jaxae.errors import require
from jaxae.likelihoods import bernoulli_nll, squared_error  # noqa: F401  (losses' own names, defined there)


def _sum_event(x: jax.Array) -> jax.Array:
  """Sums all axes but the first: `[B, ...] -> [B]`."""
  return x.reshape(x.shape[0], -1).sum(axis=-1)


def check_images(name: str, x: jax.Array) -> None:
  """`UserError` unless `x` is a batch of images `[B, H, W, C]`."""
  require(x.ndim == 4, f'{name} must be images [B, H, W, C], got shape {tuple(x.shape)}'
          + ('; add a batch axis, e.g. x[None]' if x.ndim == 3 else ''))


def _check_codes(fn: str, **arrays) -> None:
  """`UserError` unless the arrays are batches of codes `[B, K]` of one shape (one value per example results)."""
  (first, a), *rest = arrays.items()
  require(a.ndim == 2, f'{fn}: {first} must be codes [B, K] (one row per example), got shape {tuple(a.shape)}; add '
          'a batch axis, e.g. mean[None]')
  for name, b in rest:
    require(b.shape == a.shape, f'{fn}: {name} {tuple(b.shape)} must have the shape of {first} {tuple(a.shape)}')


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) in closed form, summed over latents.

  `0.5 * sum(exp(logvar) + mean^2 - 1 - logvar)`.

  Args:
    mean: `[B, K]` posterior means.
    logvar: `[B, K]` posterior log-variances.

  Returns:
    `[B]` float32.

  References:
    Kingma & Welling, Auto-Encoding Variational Bayes, 2014, Appendix B.
  """
  _check_codes('gaussian_kl', mean=mean, logvar=logvar)
  return 0.5 * _sum_event(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar)


def gaussian_kl_pair(mean1, logvar1, mean2, logvar2) -> jax.Array:
  """KL(N(mean1, var1) || N(mean2, var2)) for diagonal Gaussians, summed.

  Per dimension: `log(s2/s1) + (s1^2 + (m1-m2)^2) / (2 s2^2) - 1/2`.

  Args:
    mean1, logvar1: `[B, K]` first Gaussian.
    mean2, logvar2: `[B, K]` (or broadcastable) second Gaussian.

  Returns:
    `[B]` float32.
  """
  _check_codes('gaussian_kl_pair', mean1=mean1, logvar1=logvar1)
  per_dim = 0.5 * (logvar2 - logvar1) + (
      jnp.exp(logvar1) + jnp.square(mean1 - mean2)
  ) / (2.0 * jnp.exp(logvar2)) - 0.5
  return _sum_event(per_dim)


def gaussian_log_density(z: jax.Array, mean, logvar) -> jax.Array:
  """log N(z; mean, diag(exp(logvar))), summed over the last axis: `[..., K] -> [...]`."""
  return -0.5 * jnp.sum(
      jnp.log(2.0 * jnp.pi) + logvar + jnp.square(z - mean) * jnp.exp(-logvar),
      axis=-1,
  )


def iwae_bound(log_weights: jax.Array) -> jax.Array:
  """Importance-weighted bound `log (1/K) sum_k w_k` from log-weights.

  With `log w_k = log p(x, z_k) - log q(z_k | x)`, `z_k ~ q(z | x)`, this is a
  lower bound on `log p(x)` that tightens as K grows (K = 1 gives the ELBO).

  Args:
    log_weights: `[K, B]` log importance weights.

  Returns:
    `[B]` the bound (a log-likelihood, so negate it for an NLL).

  References:
    Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, 2016.
  """
  k = log_weights.shape[0]
  return jax.nn.logsumexp(log_weights, axis=0) - jnp.log(k)


def iwae_bound_chunked(log_weights_fn, key: jax.Array, num_samples: int, chunk: int) -> jax.Array:
  """`iwae_bound` over `num_samples` importance samples drawn `chunk` at a time: memory follows `chunk`, not K.

  A running logsumexp over `ceil(K / chunk)` chunks inside one `lax.scan`;
  chunk j draws its samples from `fold_in(key, j)`, and the samples past K in
  the last chunk get weight zero (log-weight -inf).

  Args:
    log_weights_fn: `key -> [chunk, B]` log weights of `chunk` fresh samples.
    key: PRNG key.
    num_samples: K >= 1, static.
    chunk: samples per call, static (clipped to K).

  Returns:
    `[B]` the K-sample bound on `log p(x)`.
  """
  chunk = min(chunk, num_samples)
  n_chunks = -(-num_samples // chunk)

  def body(running, j):
    log_w = log_weights_fn(jax.random.fold_in(key, j))
    real = (j * chunk + jnp.arange(chunk) < num_samples)[:, None]
    return jnp.logaddexp(running, jax.nn.logsumexp(jnp.where(real, log_w, -jnp.inf), axis=0)), None

  shape = jax.eval_shape(log_weights_fn, key).shape[1:]
  running, _ = jax.lax.scan(body, jnp.full(shape, -jnp.inf), jnp.arange(n_chunks))
  return running - jnp.log(num_samples)


def masked_mean(per_example: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of `[B]` values over the examples where `mask` ([B], 0/1) is 1 (all when None)."""
  if mask is None:
    return jnp.mean(per_example)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_sum(per_example: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Sum of `[B]` values where `mask` is 1 (all of them when `mask` is None)."""
  return jnp.sum(per_example if mask is None else per_example * mask)


def masked_count(batch) -> jax.Array:
  """Number of real (unpadded) examples in `batch`, as float32."""
  mask = batch.get('mask')
  return jnp.asarray(batch['image'].shape[0] if mask is None else jnp.sum(mask), jnp.float32)


LIKELIHOODS = likelihoods.NAMES


def reconstruction_nll(out: jax.Array, x: jax.Array, likelihood, batch_ndim: int = 1) -> jax.Array:
  """Per-example NLL of `x` under the decoder output `out` (logits or means): `[B]`.

  `likelihood`: a name from `LIKELIHOODS` or a likelihood object (`jaxae.likelihoods`); an unknown name is a
  `UserError` listing the allowed ones. With `batch_ndim=2`, `out: [K, B, ...]` against `x: [1, B, ...]`
  (broadcast inside the fused loop, never materialised) gives `[K, B]`.
  """
  require(out.ndim == x.ndim == batch_ndim + 3, f'reconstruction_nll: out {tuple(out.shape)} and x '
          f'{tuple(x.shape)} must both be images [B, H, W, C] (or [K, B, H, W, C] with batch_ndim=2)')
  return likelihoods.get(likelihood).nll(out, x, batch_ndim)


def decoder_mean(out: jax.Array, likelihood) -> jax.Array:
  """The decoder distribution's mean as an image: sigmoid(logits), the clipped Gaussian mean, or the
  continuous Bernoulli's mean (`likelihood`: a name or an object, as for `reconstruction_nll`)."""
  return likelihoods.get(likelihood).mean(out)


def gan_real_loss(logits: jax.Array, target: float = 1.0) -> jax.Array:
  """`-log D(x) = softplus(-logits)` for inputs labelled real: `[B]` or `[B, 1]` logits -> `[B]`.

  Applied to D(G(z)) it is the generator's non-saturating loss. `target` < 1 is one-sided label smoothing, the
  cross-entropy to `target`: `target * softplus(-logits) + (1 - target) * softplus(logits)`.

  References:
    Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014, Sec. 3.
    Salimans et al., Improved Techniques for Training GANs, NeurIPS 2016, Sec. 3.4 (one-sided label smoothing).
  """
  logits = logits.reshape(logits.shape[0])
  if target == 1.0:
    return jax.nn.softplus(-logits)
  return target * jax.nn.softplus(-logits) + (1 - target) * jax.nn.softplus(logits)


def gan_fake_loss(logits: jax.Array) -> jax.Array:
  """`-log(1 - D(x)) = softplus(logits)` for inputs labelled fake: `[B]` or `[B, 1]` -> `[B]`."""
  return jax.nn.softplus(logits.reshape(logits.shape[0]))


def gradient_penalty(critic, x_real: jax.Array, x_fake: jax.Array, eps: jax.Array) -> jax.Array:
  """WGAN-GP penalty `(||grad_x f(x_hat)||_2 - 1)^2` at `x_hat = eps * x_real + (1 - eps) * x_fake`.

  Args:
    critic: `f`, mapping `[B, ...]` inputs to `[B]` or `[B, 1]` scores, each row
      depending on its own input only (no batch statistics), so the gradient of
      the summed scores holds every example's own gradient.
    x_real, x_fake: `[B, ...]`.
    eps: `[B, 1, ..., 1]` interpolation weights in [0, 1].

  Returns:
    `[B]` float32.

  References:
    Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017, Alg. 1.
  """
  x_hat = eps * x_real + (1.0 - eps) * x_fake
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
  norm = jnp.sqrt(_sum_event(jnp.square(grads)) + 1e-12)
  return jnp.square(norm - 1.0)
