"""One suite over every model family (picked up by name), plus family-specific checks."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae import config as config_lib
from jaxae import cpu, data, models, steps
from jaxae import nn as jnn
from jaxae.errors import UserError

FAMILIES = models.names()


def make(name, arch='mlp', shape=(28, 28, 1), **overrides):
  """A family's state on a batch of 6 random images; an MLP drops the conv nets' norms (DCGAN's batch norm)."""
  norms = {k: 'none' for k in ('norm', 'd_norm') if arch == 'mlp' and k in config_lib.defaults(name)}
  config = config_lib.resolve({'model': name, 'arch': arch, 'hidden': (64, 32), 'latent_dim': 8,
                               'conv_features': (8, 16), **norms, **overrides})
  batch = {'image': jax.random.uniform(jax.random.key(9), (6, *shape)), 'label': jnp.arange(6, dtype=jnp.int32)}
  model = models.get(name)
  return model, config, models.create_state(model, jax.random.key(0), config, batch), batch


def test_every_family_is_found_by_name():
  assert {'ae', 'tied_ae', 'dae', 'dropout_ae', 'vae', 'iwae', 'aae', 'gan', 'dcgan', 'wgan_gp'} <= set(FAMILIES)
  with pytest.raises(ValueError, match="unknown model 'nope'"):
    models.get('nope')


@pytest.mark.parametrize('name', FAMILIES)
def test_every_family_exports_the_contract_and_declares_exactly_what_it_has(name):
  """The loop's names are there; each capability is declared iff its functions are (the only `hasattr` on a
  family: the check that keeps `CAN` true)."""
  model = models.get(name)
  assert all(hasattr(model, n) for n in models.REQUIRED), [n for n in models.REQUIRED if not hasattr(model, n)]
  assert isinstance(model.CAN, frozenset) and model.CAN <= set(models.CAPABILITIES)
  for capability, functions in models.FUNCTIONS.items():
    assert models.can(model, capability) == all(callable(getattr(model, f, None)) for f in functions), capability
  if models.can(model, 'conditional'):  # labels are asked for, and the classes are a config key
    assert 'labels' in inspect.signature(model.sample).parameters and model.defaults()['num_classes'] > 0
  assert set(model.KEYS) <= set(model.defaults()) and model.HEADLINE


# An MLP flattens any H x W x C, so one MLP shape covers it (the digits'); the conv nets run the shapes whose
# strides differ (28 x 28: a 7 x 7 bottleneck; 32 x 32 x 3: colour, 8 x 8 bottleneck): every family runs one of
# them, in turn, so each shape runs on half the families (the conv blocks are jaxae.nn's, shared by all, and
# tests/test_norm.py and test_train.py run conv nets end to end on both), and the conditional presets on colour.
CONV_SHAPES = [(28, 28, 1), (32, 32, 3)]
PRESETS = ('cgan', 'cdcgan', 'saae')


def shape_cases() -> list[tuple[str, str, tuple]]:
  cases = []
  for i, name in enumerate(FAMILIES):
    conv = (32, 32, 3) if name in PRESETS else CONV_SHAPES[i % 2]
    cases += [(name, 'conv', conv)] + ([] if name in PRESETS else [(name, 'mlp', (8, 8, 1))])
  return cases


@pytest.mark.parametrize('name,arch,shape', shape_cases())
def test_shapes_of_codes_images_and_metrics(name, arch, shape):
  model, config, state, batch = make(name, arch, shape)
  if models.can(model, 'encode'):
    assert model.encode(state, batch['image']).shape == (6, 8)
  images = jax.jit(steps.bind(model.eval_images, config))(state, batch, jax.random.key(1))
  labelled = callable(getattr(model, 'encode_labelled', None)) or callable(getattr(model, 'decode_labelled', None))
  assert images and ('reconstructions' in images) == (models.can(model, 'encode') or labelled)
  assert ('class_grid' in images) == models.can(model, 'conditional')
  for name, value in images.items():
    k = config.get('num_classes', 0)
    assert value.shape == ((k * k,) if name == 'class_grid' else (6,)) + shape
    assert float(value.min()) >= 0 and float(value.max()) <= 1
  new_state, metrics = jax.jit(steps.bind(model.train_step, config))(state, batch, jax.random.key(2))
  assert set(model.HEADLINE) <= set(metrics) and all(np.isfinite(float(v)) for v in metrics.values())
  assert int(new_state.step) == 1
  sums = jax.jit(steps.bind(model.eval_step, config))(state, batch, jax.random.key(3))
  assert set(model.HEADLINE) <= set(sums) and float(sums['count']) == 6


def test_bind_fails_loudly_on_a_hyperparameter_that_is_not_a_config_key():
  config = config_lib.resolve({'model': 'vae'})
  assert steps.bind(lambda state, batch, key, *, beta: beta, config)(None, None, None) == 1.0

  def renamed(state, batch, key, *, betta):
    return betta

  def defaulted(state, batch, key, *, beta=2.0):
    return beta

  with pytest.raises(TypeError, match="hyperparameter 'betta' is not a config key"):
    steps.bind(renamed, config)
  with pytest.raises(TypeError, match="hyperparameter 'beta' has a default"):
    steps.bind(defaulted, config)


@pytest.mark.parametrize('preset,base', [('dae', 'ae'), ('tied_ae', 'ae'), ('dropout_ae', 'ae'), ('dcgan', 'gan'),
                                         ('wgan_gp', 'gan'), ('iwae', 'vae'), ('cgan', 'gan'), ('cdcgan', 'gan')])
def test_presets_re_export_exactly_the_family_contract(preset, base):
  preset, base = models.get(preset), models.get(base)
  same = [n for n in base.__all__ if n not in ('defaults', 'CAN')]  # a preset may declare other capabilities
  assert base.__all__ and all(getattr(preset, n) is getattr(base, n) for n in same)
  assert not hasattr(preset, 'losses') and not hasattr(preset, 'jnn')  # `import *` brought no module names


def test_the_supervised_aae_runs_the_aae_state_and_steps():
  saae, aae = models.get('saae'), models.get('aae')
  assert all(getattr(saae, n) is getattr(aae, n) for n in ('create_state', 'train_step', 'eval_step', 'sample'))


def n_dense(i, o):
  return i * o + o


@pytest.mark.parametrize('name', ['ae', 'dae', 'dropout_ae'])
def test_untied_mlp_parameter_count(name):
  _, _, state, _ = make(name)  # 784-64-32-8-32-64-784
  expected = (n_dense(784, 64) + n_dense(64, 32) + n_dense(32, 8)
              + n_dense(8, 32) + n_dense(32, 64) + n_dense(64, 784))
  assert sum(p.size for p in jax.tree.leaves(state.params)) == expected


def test_vae_parameter_count_has_mean_and_logvar_heads():
  _, _, state, _ = make('vae')
  expected = (n_dense(784, 64) + n_dense(64, 32) + n_dense(32, 16)
              + n_dense(8, 32) + n_dense(32, 64) + n_dense(64, 784))
  assert sum(p.size for p in jax.tree.leaves(state.params)) == expected


@pytest.mark.parametrize('arch,kernels', [('mlp', 3), ('conv', 5)])  # conv: 2 conv + 3 dense
def test_tied_params_hold_one_kernel_per_layer_pair(arch, kernels):
  _, _, state, _ = make('tied_ae', arch)
  names = sorted(state.params)
  assert [n for n in names if n.startswith('kernel_')] == [f'kernel_{i}' for i in range(kernels)]
  assert sum(n.startswith('encoder_bias_') for n in names) == kernels
  assert sum(n.startswith('decoder_bias_') for n in names) == kernels
  if arch == 'mlp':
    expected = 784 * 64 + 64 * 32 + 32 * 8 + (64 + 32 + 8) + (784 + 64 + 32)
    assert sum(p.size for p in jax.tree.leaves(state.params)) == expected


def test_tied_mlp_decoder_is_the_transposed_encoder():
  model, _, state, _ = make('tied_ae')
  p = state.params
  z = jax.random.normal(jax.random.key(4), (3, 8))
  h = jax.nn.relu(z @ p['kernel_2'].T + p['decoder_bias_2'][None])
  h = jax.nn.relu(h @ p['kernel_1'].T + p['decoder_bias_1'][None])
  logits = (h @ p['kernel_0'].T + p['decoder_bias_0'][None]).reshape(3, 28, 28, 1)
  np.testing.assert_allclose(model.decode(state, z, likelihood='bernoulli'), jax.nn.sigmoid(logits), atol=1e-6)


def test_tied_conv_decoder_is_the_adjoint_of_the_encoder():
  """With biases zero and no ReLU, <enc(x), z> == <x, dec(z)>: the decoder is W^T."""
  model, config, state, _ = make('tied_ae', 'conv', conv_features=(4,), hidden=())
  params = jax.tree.map(lambda p: p, state.params)
  params = {k: (jnp.zeros_like(v) if 'bias' in k else v) for k, v in params.items()}
  net = model.make_network(config, (28, 28, 1))
  x = jax.random.normal(jax.random.key(5), (2, 28, 28, 1))
  z = jax.random.normal(jax.random.key(6), (2, 8))
  # a single conv layer + dense: enc(x) = dense(relu(conv(x))); check the dense-conv chain through linear parts
  k_conv, k_dense = params['kernel_0'], params['kernel_1']
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(2, 2), padding='SAME',
                           dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  linear_enc = conv(x, k_conv).reshape(2, -1) @ k_dense
  decoded = net.apply({'params': params}, z, method='decode')
  h = (z @ k_dense.T).reshape(2, 14, 14, 4)
  linear_dec = jax.lax.conv_transpose(jax.nn.relu(h), k_conv, (2, 2), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), transpose_kernel=True)
  np.testing.assert_allclose(decoded, linear_dec, atol=1e-5)
  lhs = jnp.vdot(linear_enc, z)
  rhs = jnp.vdot(x, jax.lax.conv_transpose(h, k_conv, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                           transpose_kernel=True))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


@pytest.mark.parametrize('name,arch', [('dcgan', 'conv'), ('aae', 'mlp')])
def test_create_state_is_one_program_with_the_eager_state(name, arch):
  """`models.create_state` compiles the family's init as one program: its arrays are the eager ones (DCGAN's
  init scale, a multiply fused into the draw, within one float32 rounding), on the sample's first example only."""
  config = config_lib.resolve({'model': name, 'arch': arch, 'hidden': (16,), 'conv_features': (4, 8)})
  model, batch = models.get(name), {'image': np.random.default_rng(0).random((5, 8, 8, 1), np.float32)}
  key, lowered = jax.random.key(3), []
  listen = lambda event, _, **kw: event.endswith('jaxpr_to_mlir_module_duration') and lowered.append(kw['fun_name'])
  models._jitted_init.cache_clear()
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    one = models.create_state(model, key, config, batch)
    assert lowered == ['jit(init)']  # eagerly: one program per initialiser and layer
    other = models.create_state(model, jax.random.key(4), config, {'image': batch['image'][2:]})
    assert lowered == ['jit(init)']  # compiled once per family and config
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  eager = model.create_state(key, config, {'image': batch['image'][:1]})
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eager), strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=2 ** -24 * (name == 'dcgan'))
  assert not all(map(np.array_equal, jax.tree.leaves(one.params), jax.tree.leaves(other.params)))  # the key: an input


@pytest.mark.parametrize('name', FAMILIES)
def test_train_step_compiles_once(name):
  model, config, state, batch = make(name)
  step = jax.jit(steps.bind(model.train_step, config))
  state, _ = step(state, batch, jax.random.key(1))
  state, _ = step(state, {**batch, 'image': batch['image'] * 0.5}, jax.random.key(2))
  assert step._cache_size() == 1


@pytest.mark.parametrize('name', FAMILIES)
def test_same_key_same_step_other_key_other_randomness(name):
  model, config, state, batch = make(name)
  step = jax.jit(steps.bind(model.train_step, config))
  _, m1 = step(state, batch, jax.random.key(1))
  _, m2 = step(state, batch, jax.random.key(1))
  _, m3 = step(state, batch, jax.random.key(2))
  as_floats = lambda m: {k: float(v) for k, v in m.items()}
  assert as_floats(m1) == as_floats(m2)
  assert (as_floats(m1) != as_floats(m3)) == models.can(name, 'stochastic')


@pytest.mark.parametrize('name', models.with_capability('encode'))
def test_steps_on_real_digits_lower_the_loss(name):
  digits = data.load_digits()['train']['image'][:128]
  model, config, state, _ = make(name, shape=(8, 8, 1), learning_rate=3e-3)
  batch = {'image': jnp.asarray(digits)}
  step = jax.jit(steps.bind(model.train_step, config))
  evaluate = steps.bind(model.eval_step, config)
  metric = model.HEADLINE[0]  # the reconstruction loss (with the KL for the VAE)
  before = float(evaluate(state, batch, jax.random.key(0))[metric])
  for i in range(60):
    state, _ = step(state, batch, jax.random.key(i))
  assert float(evaluate(state, batch, jax.random.key(0))[metric]) < 0.75 * before
  assert int(state.step) == 60


def test_dropout_is_off_at_evaluation():
  model, config, state, batch = make('dropout_ae', input_dropout=0.5, dropout_rate=0.5)
  evaluate = steps.bind(model.eval_step, config)
  a, b = evaluate(state, batch, jax.random.key(1)), evaluate(state, batch, jax.random.key(2))
  assert float(a['loss']) == float(b['loss'])
  train_out = state.apply_fn({'params': state.params}, batch['image'], train=True,
                             rngs={'dropout': jax.random.key(3)})
  eval_out = state.apply_fn({'params': state.params}, batch['image'])
  assert not np.allclose(train_out, eval_out)
  plain = models.create_state(models.get('ae'), jax.random.key(0),
                              {**config, 'input_dropout': 0.0, 'dropout_rate': 0.0}, batch)
  np.testing.assert_allclose(eval_out, plain.apply_fn({'params': state.params}, batch['image']), atol=1e-6)


def test_denoising_loss_targets_the_clean_input():
  model, config, state, batch = make('dae', noise='masking', noise_level=0.5)
  loss, _ = model.loss_fn(state.params, state.batch_stats, state.apply_fn, batch, jax.random.key(1),
                          likelihood='bernoulli', noise='masking', noise_level=0.5)
  from jaxae import corruption, losses
  noise_key, _ = jax.random.split(jax.random.key(1))
  x_tilde = corruption.masking(batch['image'], noise_key, 0.5)
  out = state.apply_fn({'params': state.params}, x_tilde)
  np.testing.assert_allclose(loss, losses.bernoulli_nll(out, batch['image']).mean(), rtol=1e-5)


def test_vae_eval_reconstructions_are_deterministic_and_samples_fixed_by_key():
  model, config, state, batch = make('vae')
  images = steps.bind(model.eval_images, config)
  a, b = images(state, batch, jax.random.key(1)), images(state, batch, jax.random.key(2))
  np.testing.assert_array_equal(a['reconstructions'], b['reconstructions'])
  assert not np.array_equal(a['samples'], b['samples'])
  np.testing.assert_array_equal(a['samples'], images(state, batch, jax.random.key(1))['samples'])


def test_vae_loss_is_rec_plus_beta_kl_and_reparameterization_uses_the_key():
  model, config, state, batch = make('vae', beta=4.0)
  _, m = model.loss_fn(state.params, state.apply_fn, batch, jax.random.key(1), likelihood='bernoulli', beta=4.0,
                       iwae_samples=1)
  np.testing.assert_allclose(m['loss'], m['rec'] + 4.0 * m['kl'], rtol=1e-6)
  np.testing.assert_allclose(m['nelbo'], m['rec'] + m['kl'], rtol=1e-6)
  out1, mean, logvar = state.apply_fn({'params': state.params}, batch['image'], rngs={'latent': jax.random.key(1)})
  out2, _, _ = state.apply_fn({'params': state.params}, batch['image'], rngs={'latent': jax.random.key(1)})
  out3, _, _ = state.apply_fn({'params': state.params}, batch['image'], rngs={'latent': jax.random.key(2)})
  np.testing.assert_array_equal(out1, out2)
  assert not np.allclose(out1, out3)


def test_iwae_nll_is_below_the_negative_elbo_and_tightens_with_k():
  model, config, state, batch = make('vae')
  x = batch['image']
  nelbo = model.eval_step(state, {'image': x}, jax.random.key(0), likelihood='bernoulli', beta=1.0,
                          iwae_samples=1, prior='gaussian')['nelbo'] / 6
  nll = {k: float(model.importance_weighted_nll(state, x, jax.random.key(1), k, likelihood='bernoulli',
                                                prior='gaussian').mean()) for k in (1, 64)}
  assert nll[64] < nll[1]
  assert nll[64] < float(nelbo) + 0.5


def test_iwae_objective_is_the_k_sample_bound_and_k_1_is_the_single_sample_elbo():
  model, config, state, batch = make('iwae')
  x, key = batch['image'], jax.random.key(4)
  log_w = model.log_weights(state.params, state.apply_fn, x, key, 5, likelihood='bernoulli')
  loss, _ = model.loss_fn(state.params, state.apply_fn, batch, key, likelihood='bernoulli', beta=1.0, iwae_samples=5)
  np.testing.assert_allclose(loss, -np.mean(jax.nn.logsumexp(log_w, axis=0) - np.log(5)), rtol=1e-6)
  # K = 1: the mean of log w over z ~ q is the ELBO, which the VAE loss computes with an analytic KL
  mc = -model.log_weights(state.params, state.apply_fn, x, key, 4000, likelihood='bernoulli').mean(axis=0)
  analytic = np.mean([model.negative_elbo(state, x, jax.random.key(k), likelihood='bernoulli', prior='gaussian')
                      for k in range(300)], axis=0)
  np.testing.assert_allclose(mc, analytic, rtol=0.01)
  for bad, match in (({'iwae_samples': 0}, 'iwae_samples must be positive'), ({'beta': 0.5}, 'has no beta')):
    with pytest.raises(UserError, match=match):
      config_lib.resolve({'model': 'iwae', **bad})


@pytest.fixture(params=['cpu_kernels', 'standard'])
def bf16_path(request):
  """Both bf16 branches: XLA CPU's kernel route (`kernels='cpu'`, on CPU), and the standard one (`'xla'`)."""
  if request.param == 'cpu_kernels' and jax.default_backend() != 'cpu':
    pytest.skip("the CPU kernels are XLA CPU's")
  return request.param


def kernels_of(path: str) -> str:
  return 'cpu' if path == 'cpu_kernels' else 'xla'


@pytest.mark.parametrize('name', ['vae', 'tied_ae', 'ae'])
@pytest.mark.parametrize('arch', ['mlp', 'conv'])
def test_bf16_matmuls_match_f32_with_float32_params_and_loss(name, arch, bf16_path):
  model, config, state, batch = make(name, arch, kernels=kernels_of(bf16_path))
  config16 = {**config, 'precision': 'bf16'}
  net16 = model.make_network(config16, (28, 28, 1))
  out32 = state.apply_fn({'params': state.params}, batch['image'], method='encode')
  out16 = net16.apply({'params': state.params}, batch['image'], method='encode')
  out32, out16 = jax.tree.leaves(out32)[0], jax.tree.leaves(out16)[0]
  assert out16.dtype == jnp.float32
  np.testing.assert_allclose(out16, out32, atol=0.05 * float(jnp.abs(out32).max()))
  state16 = models.create_state(model, jax.random.key(0), config16, batch)
  assert {p.dtype for p in jax.tree.leaves(state16.params)} == {jnp.dtype('float32')}
  step16 = jax.jit(steps.bind(model.train_step, config16))
  assert 'bf16' in step16.lower(state16, batch, jax.random.key(1)).as_text()
  _, metrics = step16(state16, batch, jax.random.key(1))
  assert metrics['loss'].dtype == jnp.float32 and np.isfinite(float(metrics['loss']))


@pytest.mark.parametrize('transpose', [False, True])
@pytest.mark.parametrize('shapes', [((3, 7, 7, 5), 6), ((2, 14, 14, 3), 1), ((2, 6, 10, 2), 3), ((2, 8, 8, 1), 20)])
def test_the_cpu_convs_are_flaxs_with_the_same_parameters_values_and_gradients(shapes, transpose):
  """`jnn.conv` on CPU (kernel gradients as matmuls of patches, `jaxae.cpu`) against Flax's `nn.Conv` and
  `nn.ConvTranspose`, also inside a `lax.scan`, where XLA CPU's own kernel gradient is slow; the last shape's
  windows (16 wide) are narrower than the conv's output (20), so `f32_matmul` takes autodiff's weight gradient."""
  import flax.linen as nn

  x_shape, features = shapes
  x = jax.random.normal(jax.random.key(0), x_shape)
  ours = jnn.conv(features, 'f32', transpose, kernels='cpu')
  theirs = (nn.ConvTranspose if transpose else nn.Conv)(features, jnn.KERNEL, strides=(2, 2), padding='SAME')
  params = ours.init(jax.random.key(1), x)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(theirs.init(jax.random.key(1), x)), strict=True):
    np.testing.assert_array_equal(a, b)
  out = theirs.apply(params, x)
  g = jax.random.normal(jax.random.key(2), out.shape)
  np.testing.assert_allclose(ours.apply(params, x), out, rtol=1e-5, atol=1e-5)

  def grads(net):
    grad = jax.grad(lambda p, x: jnp.sum(net.apply(p, x) * g), (0, 1))
    return jax.jit(lambda p, x: jax.lax.scan(lambda c, _: (c, grad(p, x)), 0, None, length=2)[1])(params, x)

  for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(theirs)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_the_tied_conv_net_computes_the_same_on_both_branches():
  from jaxae.models import _tied

  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  params = _tied.TiedAutoencoder((8, 8, 3), 4, (), (5, 6)).init(jax.random.key(1), x)
  results = []
  for kernels in ('cpu', 'xla'):
    net = _tied.TiedAutoencoder((8, 8, 3), 4, (), (5, 6), kernels=kernels)
    results.append((net.apply(params, x), jax.grad(lambda p, net=net: jnp.sum(net.apply(p, x) ** 2))(params)))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_bf16_policy_off_cpu_is_flax_dtype_and_forward_mode_differentiable(bf16_path):
  """With JAX's kernels (`kernels='xla'`, every backend's) a bf16 layer is `nn.Dense(dtype=bfloat16)` (bf16
  activations, float32 params), which `jax.jvp` and `jax.jacfwd` differentiate; the CPU route is a
  `custom_vjp`, reverse mode only."""
  net = jnn.MLPEncoder((32,), 4, precision='bf16', kernels=kernels_of(bf16_path))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  params = net.init(jax.random.key(1), x)
  hidden = net.apply(params, x, capture_intermediates=True)[1]['intermediates']['Dense_0']['__call__'][0]
  assert hidden.dtype == (jnp.float32 if bf16_path == 'cpu_kernels' else jnp.bfloat16)
  f = lambda x: net.apply(params, x)  # noqa: E731
  if bf16_path == 'cpu_kernels':
    with pytest.raises(TypeError, match='custom_vjp'):
      jax.jvp(f, (x,), (x,))
    return
  out, tangent = jax.jvp(f, (x,), (x,))
  assert out.dtype == tangent.dtype == jnp.float32
  np.testing.assert_allclose(tangent, f(x) - f(jnp.zeros_like(x)), atol=0.05)  # linear in x up to the ReLU and bf16
  assert jax.jacfwd(f)(x[:1]).shape == (1, 4, 1, 8, 8, 1)


@pytest.mark.parametrize('name', FAMILIES)
def test_every_familys_networks_are_forward_mode_differentiable_with_jaxs_kernels(name):
  """With `kernels='xla'` (on CPU too) `jax.jvp` runs through every family's conv networks, bf16 included, as
  through any JAX code; with jaxae's CPU kernels (custom_vjp, reverse mode) it cannot."""
  overrides = {'precision': 'bf16'} if name == 'vae' else {}
  model, config, state, batch = make(name, 'conv', (8, 8, 1), kernels='xla', **overrides)
  headline = model.HEADLINE[0]
  f = lambda params: steps.bind(model.eval_step, config)(state.replace(params=params), batch, jax.random.key(3))[
      headline]
  tangent = jax.tree.map(jnp.ones_like, state.params)
  value, derivative = jax.jit(lambda p, t: jax.jvp(f, (p,), (t,)))(state.params, tangent)  # one program
  assert np.isfinite(float(value)) and np.isfinite(float(derivative))
  if jax.default_backend() == 'cpu' and name in ('vae', 'dcgan'):
    _, _, cpu_state, _ = make(name, 'conv', (8, 8, 1), kernels='cpu', **overrides)
    g = lambda params: steps.bind(model.eval_step, config)(cpu_state.replace(params=params), batch,
                                                           jax.random.key(3))[headline]
    with pytest.raises(TypeError, match='custom_vjp'):
      jax.jvp(g, (cpu_state.params,), (tangent,))


def test_the_kernels_are_chosen_once_by_backend_and_jaxlib(recwarn):
  assert cpu.resolve('auto', backend='gpu') == cpu.resolve('xla', backend='cpu') == 'xla'
  assert cpu.resolve('auto', backend='cpu', jaxlib='0.10.2') == cpu.resolve('cpu', backend='cpu') == 'cpu'
  assert len(recwarn) == 0
  with pytest.warns(RuntimeWarning, match=r"jaxae's CPU kernels were checked on jaxlib 0.10, not 0.12: JAX's own"):
    assert cpu.resolve('auto', backend='cpu', jaxlib='0.12.1') == 'xla'
  with pytest.raises(UserError, match="kernels=cpu are XLA CPU's, and this process computes on gpu: use kernels=auto"):
    cpu.resolve('cpu', backend='gpu')
  with pytest.raises(UserError, match="kernels='tpu' is not one of auto, xla, cpu"):
    cpu.resolve('tpu')


@pytest.mark.parametrize('case', ['plain', 'transposed_w', 'transposed_x', 'transposed_out', 'one_row'])
def test_bf16_matmul_and_its_gradients_match_float32_within_bf16_rounding(case):
  """Values and both gradients of `bf16_matmul` against float32, compiled, also where XLA could fold a transpose
  into the dot (this XLA runs a bf16 dot it cannot hand to YNNPACK on no kernel at all)."""
  kx, kw, kv = jax.random.split(jax.random.key(0), 3)
  x, w = jax.random.normal(kx, (16, 64)), jax.random.normal(kw, (64, 32))
  v = jax.random.normal(kv, (32, 16) if case == 'transposed_out' else (16, 32))
  if case == 'one_row':
    x, v = x[:1], v[:1]

  def loss(matmul, x, w):
    if case == 'transposed_w':
      return jnp.sum(matmul(x, w.T.T) * v)
    if case == 'transposed_x':
      return jnp.sum(matmul(x.T.T, w) * v)
    if case == 'transposed_out':
      return jnp.sum(matmul(x, w).T * v)
    return jnp.sum(matmul(x, w) * v)

  f32 = functools.partial(jnp.matmul, precision='highest')
  value16, grads16 = jax.jit(jax.value_and_grad(functools.partial(loss, jnn.bf16_matmul), (0, 1)))(x, w)
  value32, grads32 = jax.value_and_grad(functools.partial(loss, f32), (0, 1))(x, w)
  assert value16.dtype == grads16[0].dtype == grads16[1].dtype == jnp.float32
  np.testing.assert_allclose(value16, value32, rtol=0.02)
  for g16, g32 in zip(grads16, grads32, strict=True):  # bf16 keeps 8 bits: relative error about 2**-8 per input
    np.testing.assert_allclose(g16, g32, atol=0.02 * float(jnp.abs(g32).max()))
  assert not np.array_equal(grads16[1], grads32[1])  # it did multiply in bf16


def test_reparameterize_is_a_pure_differentiable_draw():
  vae = models.get('vae')
  mean, logvar = jnp.array([[0.5, -1.0]]), jnp.array([[0.0, -2.0]])
  key = jax.random.key(3)
  z = vae.reparameterize(key, mean, logvar)
  np.testing.assert_array_equal(z, vae.reparameterize(key, mean, logvar))
  assert not np.allclose(z, vae.reparameterize(jax.random.key(4), mean, logvar))
  eps = jax.random.normal(key, mean.shape)
  np.testing.assert_allclose(z, mean + jnp.exp(0.5 * logvar) * eps, rtol=1e-6)
  dz_dmean = jax.jacobian(lambda m: vae.reparameterize(key, m, logvar))(mean)[0, :, 0, :]
  np.testing.assert_allclose(dz_dmean, np.eye(2), atol=1e-7)
  dz_dlogvar = jax.grad(lambda v: vae.reparameterize(key, mean, v)[0, 1])(logvar)[0, 1]
  np.testing.assert_allclose(dz_dlogvar, 0.5 * jnp.exp(-1.0) * eps[0, 1], rtol=1e-5)
  draws = vae.reparameterize(key, mean, logvar, num_samples=200_000)
  assert draws.shape == (200_000, 1, 2)
  np.testing.assert_allclose(draws.mean(0)[0], mean[0], atol=0.01)
  np.testing.assert_allclose(draws.std(0)[0], jnp.exp(0.5 * logvar[0]), rtol=0.01)
