"""Shared Flax linen blocks: MLP and convolutional encoders and decoders.

Images are `[B, H, W, C]` float32 everywhere; MLPs flatten them on entry and
decoders return the image shape. Decoders return unbounded outputs (Bernoulli
logits or Gaussian means); the loss decides how to read them.

Mixed precision (`precision='bf16'`) is Flax's: parameters, optimizer state and
losses stay float32; each dense or conv layer casts its input and parameters to
bf16 (`dtype=bfloat16`), its matmul or conv accumulates in float32 and returns
bf16; every network casts its output to float32.

The kernels are chosen once, at setup (`kernels`: `jaxae.cpu.resolve`), and given to every block: 'xla' (the
default) is Flax's own layers on any backend; 'cpu', for XLA CPU alone, takes `cpu.bf16_matmul` in bf16 dense
layers, whose dots that compiler's bf16 kernels run (its output, hence the activations, stay float32), and
`cpu.conv` / `cpu.conv_transpose` for conv layers (in f32 and bf16 alike: see `conv`). Both have the same
parameters.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import cpu
from jaxae.checks import ARCHS, NORMS
from jaxae.cpu import bf16_dot_general, bf16_matmul
from jaxae.errors import UserError, require

KERNEL = (4, 4)  # conv kernel; stride 2 halves H and W per layer
PRECISIONS = ('f32', 'bf16')


def compute(config) -> dict:
  """The blocks' compute settings of a config: `{'precision', 'kernels'}` (the kernels resolved: `cpu.resolve`)."""
  return {'precision': config['precision'], 'kernels': cpu.resolve(config.get('kernels', 'auto'))}


def dense(features: int, precision: str, use_bias: bool = True, kernels: str = 'xla') -> nn.Dense:
  """A Dense layer with float32 parameters; 'bf16' computes in bf16 with float32 accumulation (module docstring)."""
  if precision != 'bf16':
    return nn.Dense(features, use_bias=use_bias)
  if kernels == 'cpu':
    return nn.Dense(features, use_bias=use_bias, dot_general=bf16_dot_general)
  return nn.Dense(features, use_bias=use_bias, dtype=jnp.bfloat16)


def conv(features: int, precision: str, transpose: bool = False, use_bias: bool = True, kernels: str = 'xla'
         ) -> nn.Module:
  """A stride-2 4x4 'SAME' conv (or transposed conv), bf16 compute for 'bf16'.

  With `kernels='cpu'` (XLA CPU) both take their gradients where that compiler is fast (`cpu.conv`,
  `cpu.conv_transpose`; the same functions and parameters as Flax's); with 'xla' Flax's own.
  """
  dtype = jnp.bfloat16 if precision == 'bf16' else None
  if kernels != 'cpu':
    cls = nn.ConvTranspose if transpose else nn.Conv
    return cls(features, KERNEL, strides=(2, 2), padding='SAME', use_bias=use_bias, dtype=dtype)
  if transpose:
    return ConvTranspose(features, dtype=dtype, use_bias=use_bias)
  return nn.Conv(features, KERNEL, strides=(2, 2), padding='SAME', use_bias=use_bias, dtype=dtype,
                 conv_general_dilated=cpu.conv_general_dilated)


def normalize(norm: str, h: jax.Array, train: bool) -> jax.Array:
  """Normalises a hidden feature map `h: [B, H, W, C]` (float32 out), as `norm` says.

  - 'batch': batch norm (Ioffe & Szegedy 2015) over B, H, W per channel: the batch's statistics when `train`
    (their running averages, momentum 0.9 as PyTorch's 0.1, updated in the 'batch_stats' collection),
    the running averages otherwise;
  - 'layer': layer norm over H, W, C per example (Ba et al. 2016; what Gulrajani et al. advise for a WGAN-GP
    critic, whose gradient penalty needs outputs that depend on each example alone);
  - 'none': `h` itself.
  """
  if norm == 'batch':
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h.astype(jnp.float32))
  if norm == 'layer':
    return nn.LayerNorm(reduction_axes=(-3, -2, -1))(h.astype(jnp.float32))
  if norm == 'none':
    return h
  raise ValueError(f'norm={norm!r} is not one of {NORMS}')


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, KERNEL, strides=(2, 2), padding='SAME', dtype=dtype)`: the same parameters
  ('kernel' `[4, 4, C_in, features]`, 'bias'), initialisers and outputs, computed by `cpu.conv_transpose`
  (the CPU-only speedup of its gradients); `[B, H, W, C_in] -> [B, 2H, 2W, features]`."""

  features: int
  dtype: jnp.dtype | None = None
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (*KERNEL, x.shape[-1], self.features))
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = cpu.conv_transpose(x, kernel, (2, 2))
    if not self.use_bias:
      return y
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return y + bias.astype(y.dtype).reshape(1, 1, 1, -1)


def matmul(a: jax.Array, b: jax.Array, precision: str, kernels: str = 'xla') -> jax.Array:
  """`a @ b` for 2-D operands; 'bf16' multiplies bf16 inputs with float32 accumulation, as `dense` does.

  The output is float32 for 'f32' and with the CPU kernels (`bf16_matmul`), bf16 for 'bf16' otherwise.
  """
  if precision != 'bf16':
    return jnp.matmul(a, b, preferred_element_type=jnp.float32)
  if kernels == 'cpu':
    return bf16_matmul(a, b)
  return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))


def check_conv_shape(image_shape: Sequence[int], n_layers: int) -> None:
  """`UserError` unless H and W are divisible by 2**n_layers."""
  s = 2**n_layers
  h, w = image_shape[0], image_shape[1]
  if h % s or w % s:
    raise UserError(
        f'image size {h}x{w} does not fit a conv net of {n_layers} stride-2 '
        f'layers (needs H and W divisible by {s}); use arch=mlp or fewer '
        'conv_features'
    )


class MLPEncoder(nn.Module):
  """`[B, H, W, C] -> [B, out_dim]`: ReLU hidden layers, linear output."""

  hidden: Sequence[int]
  out_dim: int
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu
  kernels: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = self.activation(dense(width, self.precision, kernels=self.kernels)(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return dense(self.out_dim, self.precision, kernels=self.kernels)(h).astype(jnp.float32)


class MLPDecoder(nn.Module):
  """`[B, K] -> [B, H, W, C]`: ReLU hidden layers (in decoding order), linear output."""

  hidden: Sequence[int]
  image_shape: Sequence[int]
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu
  kernels: str = 'xla'

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    h = z
    for width in self.hidden:
      h = self.activation(dense(width, self.precision, kernels=self.kernels)(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    size = 1
    for d in self.image_shape:
      size *= d
    out = dense(size, self.precision, kernels=self.kernels)(h).astype(jnp.float32)
    return out.reshape((z.shape[0], *self.image_shape))


class ConvEncoder(nn.Module):
  """`[B, H, W, C] -> [B, out_dim]`: stride-2 4x4 convs (ReLU), then a linear layer.

  `norm` (`NORMS`) normalises every conv layer's output but the first (as DCGAN's discriminator: not the
  input layer); with batch norm those convs have no bias (the norm's shift replaces it).
  """

  features: Sequence[int]
  out_dim: int
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu
  norm: str = 'none'
  kernels: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = x
    for i, f in enumerate(self.features):
      norm = self.norm if i else 'none'
      layer = conv(f, self.precision, use_bias=norm != 'batch', kernels=self.kernels)
      h = self.activation(normalize(norm, layer(h), train))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return dense(self.out_dim, self.precision, kernels=self.kernels)(h.reshape(h.shape[0], -1)).astype(jnp.float32)


class ConvDecoder(nn.Module):
  """`[B, K] -> [B, H, W, C]`, mirroring `ConvEncoder(features)`.

  A linear layer to `[H/s, W/s, features[-1]]` (s = 2**len(features)), then
  stride-2 transposed convs back through the features in reverse; the last one
  outputs C channels without activation. `norm` (`NORMS`) normalises every layer's output but the last
  (as DCGAN's generator: project, batch norm, ReLU; no norm at the output).
  """

  features: Sequence[int]
  image_shape: Sequence[int]
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu
  norm: str = 'none'
  kernels: str = 'xla'

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    height, width, channels = self.image_shape
    s = 2 ** len(self.features)
    rev = list(self.features[::-1])
    bias = self.norm != 'batch'
    h = dense(height // s * width // s * rev[0], self.precision, use_bias=bias, kernels=self.kernels)(z)
    h = self.activation(normalize(self.norm, h.reshape(z.shape[0], height // s, width // s, rev[0]), train))
    for f in rev[1:]:
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      layer = conv(f, self.precision, transpose=True, use_bias=bias, kernels=self.kernels)
      h = self.activation(normalize(self.norm, layer(h), train))
    h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return conv(channels, self.precision, transpose=True, kernels=self.kernels)(h).astype(jnp.float32)


def dcgan_init(key: jax.Array, params):
  """`params` redrawn as Radford et al. initialise DCGAN: every kernel from N(0, 0.02^2), batch norm scales from
  N(1, 0.02^2) (as the PyTorch DCGAN example), biases and shifts kept (zeros)."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))

  def redraw(path, leaf, k):
    name = getattr(path[-1], 'key', None)
    if name == 'kernel':
      return 0.02 * jax.random.normal(k, leaf.shape, leaf.dtype)
    if name == 'scale':
      return 1.0 + 0.02 * jax.random.normal(k, leaf.shape, leaf.dtype)
    return leaf

  return jax.tree_util.tree_unflatten(treedef, [redraw(p, v, k) for (p, v), k in zip(leaves, keys, strict=True)])


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2, the discriminators' activation in the GAN and DCGAN papers."""
  return nn.leaky_relu(x, 0.2)


def make_encoder(arch: str, out_dim: int, hidden, conv_features, dropout_rate=0.0, precision='f32',
                 activation=nn.relu, norm='none', kernels='xla'):
  """Builds the encoder named by `arch` ('mlp' or 'conv'; `norm` is the conv net's); discriminators are encoders
  to one logit."""
  require(arch in ARCHS, f"arch={arch!r} is not one of {', '.join(ARCHS)}")
  if arch == 'conv':
    return ConvEncoder(tuple(conv_features), out_dim, dropout_rate, precision, activation, norm, kernels)
  return MLPEncoder(tuple(hidden), out_dim, dropout_rate, precision, activation, kernels)


def make_decoder(arch: str, image_shape, hidden, conv_features, dropout_rate=0.0, precision='f32',
                 activation=nn.relu, norm='none', kernels='xla'):
  """Builds the decoder mirroring `make_encoder(arch, ...)`; generators are decoders from noise. `UserError` for
  an image shape a conv net of `conv_features` cannot produce (`check_conv_shape`)."""
  require(arch in ARCHS, f"arch={arch!r} is not one of {', '.join(ARCHS)}")
  if arch == 'conv':
    check_conv_shape(image_shape, len(conv_features))
    return ConvDecoder(tuple(conv_features), tuple(image_shape), dropout_rate, precision, activation, norm, kernels)
  return MLPDecoder(tuple(hidden[::-1]), tuple(image_shape), dropout_rate, precision, activation, kernels)
