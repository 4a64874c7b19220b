"""Hierarchical VAE: L stochastic layers, bottom-up (IWAE) or top-down (Ladder VAE) inference, and a Gaussian,
mixture or VampPrior top prior; KL warm-up and free bits; the K-sample IWAE bound for every L.

The networks are in `jaxae.models._hierarchy` (its docstring has the equations). z_1 is the layer next to the data
(`latent_dim`); `upper_latents` are the sizes of z_2 ... z_L (empty: L = 1, the VAE's network parameter for
parameter), `upper_hidden` the widths of the stacks between them (`upper_depth` hidden layers each).

The objective is the negative beta-ELBO per example, `rec + w_t * sum_i KL_i`, averaged over the batch:

- `KL_i` is layer i's term. In closed form where it has one given the layers drawn before it: every layer of
  top-down inference, and the top layer under the Gaussian prior; a one-sample estimate
  `log q(z_i | .) - log p(z_i | .)` otherwise (bottom-up inference's lower layers, where z_{i+1} is drawn from
  z_i; the mixture and VampPrior, which have no closed form). The metrics report each (`kl1` ... `klL`).
- KL warm-up (Sønderby et al. 2016): `w_t = beta * min(1, t / kl_warmup_steps)` at step t (`kl_warmup` epochs,
  turned into steps when a run starts; research code sets `kl_warmup_steps`).
- Free bits (Kingma et al. 2016, with each layer a group): layer i contributes `max(free_bits, KL_i)` with
  KL_i averaged over the batch, so a layer under `free_bits` nats is not pushed further down.

With `iwae_samples = K > 1` training maximises the K-sample IWAE bound instead (no beta, warm-up or free bits).
Evaluation reports the per-layer KL and the active units of each layer (Burda et al.: units whose posterior
mean varies over the held-out images, Cov_x E_q[z_u] > 0.01, read on the posterior-mean pass).

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
  Sønderby, Raiko, Maaløe, Sønderby & Winther, Ladder Variational Autoencoders, NeurIPS 2016.
  Tomczak & Welling, VAE with a VampPrior, AISTATS 2018.
  Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, Improved Variational Inference with Inverse
  Autoregressive Flow, NeurIPS 2016 (free bits).
"""

import functools

import jax
import jax.numpy as jnp

from jaxae import checks, losses, metrics, steps
from jaxae import nn as jnn
from jaxae.errors import require
from jaxae.models import _hierarchy

__all__ = ['CAN', 'HEADLINE', 'KEYS', 'create_state', 'decode', 'defaults', 'encode', 'encode_layers',
           'eval_images', 'eval_step', 'importance_weighted_nll', 'kl_weight', 'layer_terms', 'log_weights',
           'loss_fn', 'make_network', 'negative_elbo', 'sample', 'sample_from_level', 'train_step', 'validate']

HEADLINE = ('loss',)
CAN = frozenset({'encode', 'sample', 'stochastic', 'elbo'})

KEYS = dict(
    upper_latents='sizes of z_2 ... z_L above z_1 (latent_dim), e.g. 50 (two layers); empty: one layer',
    upper_hidden='width of the dense stack below each upper layer (one per upper_latents entry), both directions',
    upper_depth='hidden layers in each of those stacks',
    upper_norm='norm of those stacks: none, layer or weight (weight normalisation)',
    inference='bottom_up (IWAE: each layer from the sample below) or top_down (Ladder VAE: precision-weighted '
              'merge of an upward pass with the generative top-down pass)',
    prior='the prior of the top layer: gaussian N(0, I), mixture (learned mixture of Gaussians) or vamp '
          '(VampPrior: the top posterior at learned pseudo-inputs)',
    prior_components='components of the mixture / pseudo-inputs of the VampPrior',
    beta='weight of the KL terms (1: the ELBO)',
    iwae_samples='importance samples K of the training bound (1: the ELBO; > 1: the IWAE bound, beta = 1)',
    kl_warmup='epochs over which the KL weight rises linearly from 0 to beta (0: none)',
    kl_warmup_steps='the warm-up in steps (0: kl_warmup epochs, resolved when the run starts)',
    free_bits='nats per layer below which a layer\'s batch-averaged KL is not penalised (0: none)',
)


def defaults() -> dict:
  # the best of the measured ladder (docs: Hierarchical VAEs, Measured): a 3-layer Ladder VAE with Sønderby et al.'s
  # widths and a 10-epoch KL warm-up
  return dict(
      arch='mlp', hidden=(512, 512), conv_features=(32, 64), latent_dim=64, norm='none',
      upper_latents=(32, 16), upper_hidden=(256, 128), upper_depth=2, upper_norm='none', inference='top_down',
      prior='gaussian', prior_components=500, likelihood='bernoulli', beta=1.0, iwae_samples=1, kl_warmup=10.0,
      kl_warmup_steps=0, free_bits=0.0,
  )


def validate(config) -> None:
  checks.check_network(config)
  checks.check(config, choices={'likelihood': losses.LIKELIHOODS, 'inference': _hierarchy.INFERENCE,
                                'prior': _hierarchy.PRIORS, 'upper_norm': _hierarchy.UPPER_NORMS},
               non_negative=('beta', 'kl_warmup', 'kl_warmup_steps', 'free_bits'),
               positive=('iwae_samples', 'upper_depth', 'prior_components'))
  up, widths = config['upper_latents'], config['upper_hidden']
  require(len(up) <= 4, f'upper_latents={",".join(map(str, up))} gives {len(up) + 1} stochastic layers; jaxae '
          'builds 1 to 5: give at most 4 sizes')
  require(len(widths) == len(up), f'upper_hidden gives {len(widths)} width(s) for {len(up)} upper layer(s) '
          f'(upper_latents={",".join(map(str, up)) or "empty"}): give one width per upper layer')
  checks.require(config['norm'] != 'batch', 'norm=batch would make each bound depend on the other examples of its '
                 'batch; set norm=layer (per example) or none')
  checks.require(config['iwae_samples'] == 1 or (config['beta'] == 1 and config['free_bits'] == 0 and not (
      config['kl_warmup'] or config['kl_warmup_steps'])), f"the IWAE bound (iwae_samples={config['iwae_samples']}) "
      'has no beta, warm-up or free bits: set iwae_samples=1, or beta=1, kl_warmup=0 and free_bits=0')


def make_network(config, image_shape) -> _hierarchy.Hierarchy:
  """The hierarchy of a resolved `config` for images of shape `image_shape` `(H, W, C)`."""
  checks.resolved(config, defaults(), 'hvae', 'make_network')
  arch, hidden, conv = config['arch'], config['hidden'], config['conv_features']
  kw = dict(norm=config['norm'], **jnn.compute(config))
  return _hierarchy.Hierarchy(
      jnn.make_encoder(arch, 2 * config['latent_dim'], hidden, conv, **kw),
      jnn.make_decoder(arch, image_shape, hidden, conv, **kw),
      sizes=(config['latent_dim'], *config['upper_latents']), widths=tuple(config['upper_hidden']),
      depth=config['upper_depth'], inference=config['inference'], prior=config['prior'],
      components=config['prior_components'], image_shape=tuple(image_shape), norm=config['upper_norm'],
      **jnn.compute(config))


def create_state(key: jax.Array, config, sample_batch) -> steps.TrainState:
  x = sample_batch['image'][:1]
  net = make_network(config, x.shape[1:])
  return steps.create_train_state(net.apply, net.init({'params': key, 'latent': key}, x), config)


def layer_terms(params, apply_fn, x: jax.Array, key: jax.Array, *, likelihood, inference, prior
                ) -> tuple[jax.Array, jax.Array]:
  """`(rec [B], kl [L, B])`: the reconstruction NLL and each layer's KL term (module docstring) in nats, with one
  draw z ~ q(z | x) from `key`; `x: [B, H, W, C]`. `rec + kl.sum(0)` is the -ELBO. `inference` and `prior` are
  the network's (they choose which terms have a closed form)."""
  losses.check_images('x', x)
  d = jax.tree.map(lambda a: a[0], apply_fn({'params': params}, x, key, 1, method='draw'))  # the one draw
  kl = []
  for i, (z, (qm, qlv)) in enumerate(zip(d['z'], d['q'], strict=True)):
    if i < len(d['p']):
      pm, plv = d['p'][i]
      closed = inference == 'top_down'
    else:  # the top layer
      pm = plv = None
      closed = prior == 'gaussian'
    if closed:
      kl.append(losses.gaussian_kl(qm, qlv) if pm is None else losses.gaussian_kl_pair(qm, qlv, pm, plv))
    else:
      log_p = (apply_fn({'params': params}, z, method='prior_log_prob') if pm is None
               else losses.gaussian_log_density(z, pm, plv))
      kl.append(losses.gaussian_log_density(z, qm, qlv) - log_p)
  return losses.reconstruction_nll(d['logits'], x, likelihood), jnp.stack(kl)


def log_weights(params, apply_fn, x: jax.Array, key: jax.Array, num_samples: int, *, likelihood,
                prior=None) -> jax.Array:
  """`log p(x, z_k) - log q(z_k | x)` for K = `num_samples` draws of every layer from `key`: `[K, B]`;
  `x: [B, H, W, C]`. (`prior` is taken for the VAE's signature and not read: the network holds its prior.)

  log p(x, z) = log p(x | z_1) + sum_{i<L} log p(z_i | z_{i+1}) + log p(z_L); log q(z | x) = sum_i log q(z_i | .).
  The K * B decoder passes run as one batch (memory: K * B images).
  """
  del prior
  losses.check_images('x', x)
  d = apply_fn({'params': params}, x, key, num_samples, method='draw')
  log_w = -losses.reconstruction_nll(d['logits'], x[None], likelihood, batch_ndim=2)
  log_w = log_w + apply_fn({'params': params}, d['z'][-1], method='prior_log_prob')
  for z, (pm, plv) in zip(d['z'], d['p'], strict=False):  # p: the layers under the top
    log_w = log_w + losses.gaussian_log_density(z, pm, plv)
  for z, (qm, qlv) in zip(d['z'], d['q'], strict=True):
    log_w = log_w - losses.gaussian_log_density(z, qm, qlv)
  return log_w


def kl_weight(step: jax.Array, beta, kl_warmup_steps) -> jax.Array:
  """The KL weight at step `step` (steps taken before this one): `beta * min(1, step / kl_warmup_steps)`, and
  `beta` without a warm-up (`kl_warmup_steps = 0`)."""
  ramp = jnp.minimum(1.0, step / jnp.maximum(kl_warmup_steps, 1))
  return beta * jnp.where(kl_warmup_steps > 0, ramp, 1.0)


def loss_fn(params, apply_fn, batch, key, *, likelihood, beta, iwae_samples, free_bits, inference, prior):
  """The negative beta-ELBO with free bits (or, for `iwae_samples` > 1, the negative IWAE bound) averaged over
  the batch: `(loss, metrics)`; `beta` is this step's KL weight (`kl_weight`). `batch['image']: [B, H, W, C]`,
  an optional `batch['mask']: [B]` (0: padding). Metrics (nats per example): loss; for the ELBO also rec, the KL
  summed over layers and per layer (`kl1` ... `klL`), -ELBO ('nelbo') and the KL weight ('kl_weight')."""
  mask = batch.get('mask')
  if iwae_samples > 1:
    nll = -losses.iwae_bound(log_weights(params, apply_fn, batch['image'], key, iwae_samples,
                                         likelihood=likelihood))
    loss = losses.masked_mean(nll, mask)
    return loss, {'loss': loss}
  rec, kl = layer_terms(params, apply_fn, batch['image'], key, likelihood=likelihood, inference=inference,
                        prior=prior)
  rec, kl = losses.masked_mean(rec, mask), jax.vmap(lambda k: losses.masked_mean(k, mask))(kl)  # [L]
  penalised = jnp.where(free_bits > 0, jnp.maximum(kl, free_bits), kl)
  loss = rec + beta * jnp.sum(penalised)
  return loss, {'loss': loss, 'rec': rec, 'kl': jnp.sum(kl), 'nelbo': rec + jnp.sum(kl), 'kl_weight': beta,
                **{f'kl{i + 1}': v for i, v in enumerate(kl)}}


def train_step(state, batch, key, *, likelihood, beta, iwae_samples, free_bits, kl_warmup_steps, inference,
               prior):
  """`(state, batch, key) -> (state, metrics of loss_fn)`; the KL weight follows `kl_weight(state.step, ...)`,
  key feeds every layer's z."""
  weight = kl_weight(state.step, beta, kl_warmup_steps)
  return steps.gradient_step(state, loss_fn, batch, key, likelihood=likelihood, beta=weight,
                             iwae_samples=iwae_samples, free_bits=free_bits, inference=inference, prior=prior)


def eval_step(state, batch, key, *, likelihood, beta, iwae_samples, kl_warmup_steps, inference, prior):
  """Sums over the batch of loss (the training objective at this step's KL weight, without free bits), rec, kl,
  -ELBO and each layer's KL (nats), the active-unit moments of each layer (`metrics.active_units`), and
  `count`."""
  x, mask = batch['image'], batch.get('mask')
  rec, kl = layer_terms(state.params, state.apply_fn, x, key, likelihood=likelihood, inference=inference,
                        prior=prior)
  total = jnp.sum(kl, axis=0)
  loss = rec + kl_weight(state.step, beta, kl_warmup_steps) * total
  if iwae_samples > 1:
    loss = -losses.iwae_bound(log_weights(state.params, state.apply_fn, x, jax.random.fold_in(key, 1),
                                          iwae_samples, likelihood=likelihood))
  out = {'loss': losses.masked_sum(loss, mask), 'rec': losses.masked_sum(rec, mask),
         'kl': losses.masked_sum(total, mask), 'nelbo': losses.masked_sum(rec + total, mask),
         'count': losses.masked_count(batch)}
  for i, means in enumerate(encode_layers(state, x)):
    out[f'kl{i + 1}'] = losses.masked_sum(kl[i], mask)
    out[f'{metrics.ACTIVE_UNITS}{i + 1}'] = metrics.unit_moments(means, mask)
  return out


def negative_elbo(state, x: jax.Array, key: jax.Array, *, likelihood, inference, prior) -> jax.Array:
  """Per-example -ELBO `[B]` nats of images `x: [B, H, W, C]` (one draw): the anomaly score."""
  rec, kl = layer_terms(state.params, state.apply_fn, x, key, likelihood=likelihood, inference=inference,
                        prior=prior)
  return rec + jnp.sum(kl, axis=0)


def encode_layers(state, x: jax.Array) -> tuple[jax.Array, ...]:
  """Every layer's code: the posterior means `([B, d_1], ..., [B, d_L])` of the posterior-mean pass (each layer
  drawn as its mean)."""
  d = state.apply_fn({'params': state.params}, x, jax.random.key(0), 1, False, method='codes')
  return tuple(z[0] for z in d['z'])


def encode(state, x: jax.Array) -> jax.Array:
  """z_1's posterior mean `[B, latent_dim]`, the code that `decode` maps back to images (`encode_layers` gives
  every layer's)."""
  return encode_layers(state, x)[0]


def decode(state, z: jax.Array, *, likelihood) -> jax.Array:
  """Images `[B, H, W, C]` in [0, 1]: the decoder mean at z_1 = `z: [B, latent_dim]`."""
  return losses.decoder_mean(state.apply_fn({'params': state.params}, z, method='decode'), likelihood)


def sample_from_level(state, key: jax.Array, n: int, level: int, *, likelihood) -> jax.Array:
  """`n` images `[n, H, W, C]` from the generative model with layers `level` ... L (counted from 1 at z_1) drawn
  and the layers below at their conditional means: `level = 1` is an ordinary sample, `level = L` shows what
  the top layer alone decides."""
  k_top, k_down = jax.random.split(key)
  z_top = state.apply_fn({'params': state.params}, k_top, n, method='prior_sample')
  out = state.apply_fn({'params': state.params}, z_top, k_down, level - 1, method='generate')
  return losses.decoder_mean(out, likelihood)


def sample(state, key: jax.Array, n: int, *, likelihood) -> jax.Array:
  """`n` images `[n, H, W, C]` from the generative model, every layer drawn: the decoder means."""
  return sample_from_level(state, key, n, 1, likelihood=likelihood)


def eval_images(state, batch, key, *, likelihood):
  """Reconstructions through the posterior means, and samples."""
  x = batch['image']
  return {'reconstructions': decode(state, encode(state, x), likelihood=likelihood),
          'samples': sample(state, key, x.shape[0], likelihood=likelihood)}


def importance_weighted_nll(state, x: jax.Array, key: jax.Array, num_samples: int, chunk: int = 500, *,
                            likelihood) -> jax.Array:
  """-log p(x) of images `x: [B, H, W, C]` estimated with the K-sample IWAE bound over every layer, K =
  `num_samples`: `[B]` nats, drawn `chunk` samples at a time (memory: chunk * B decoded images)."""
  require(isinstance(num_samples, int) and num_samples >= 1, f'num_samples must be a whole number >= 1 (static: '
          f'jit with static_argnums), got {num_samples!r}')
  fn = functools.partial(log_weights, state.params, state.apply_fn, x, num_samples=min(chunk, num_samples),
                         likelihood=likelihood)
  return -losses.iwae_bound_chunked(fn, key, num_samples, chunk)
