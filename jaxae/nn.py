"""Shared Flax linen blocks: MLP and convolutional encoders and decoders.

Images are `[B, H, W, C]` float32 everywhere; MLPs flatten them on entry and
decoders return the image shape. Decoders return unbounded outputs (Bernoulli
logits or Gaussian means); the loss decides how to read them.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL = (4, 4)  # conv kernel; stride 2 halves H and W per layer
PRECISIONS = ('f32', 'bf16')


# How XLA's CPU compiler (jaxlib 0.10) treats bf16 dots, which `bf16_matmul` works around:
# - it runs them on bf16 kernels (YNNPACK) only when both operands are row-major and the
#   lhs contracts its last axis; any other bf16 dot is upcast to float32 by a pass that
#   runs before layout assignment and before the simplifier;
# - it lays out a transpose (`x.T` in a weight gradient, `k.T` in a tied decoder) as a
#   column-major bitcast, so that pass upcasts a dot on it, and the simplifier later folds
#   transposes into dots (`(x @ w).T`), making a dot no kernel takes: "Unsupported element
#   type for DotThunk". Barriers around the operands and the product keep each dot in the
#   form that was checked.


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  """`[m, k] @ [k, n]` accumulated and returned in float32, kept in that form (see above)."""
  out = jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return jax.lax.optimization_barrier(out)


def _bf16(a: jax.Array) -> jax.Array:
  """`a` as bf16 in row-major layout, also where `a` is a transpose (see above).

  A transpose there and back through a rank-3 view has the same values and the default
  layout: it costs one copy where `a` is a transpose and nothing elsewhere.
  """
  b = a.astype(jnp.bfloat16).T[None]
  return jax.lax.optimization_barrier(jnp.swapaxes(b, 1, 2)[0])


@jax.custom_vjp
def bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """`x @ w` for x `[B, k]`, w `[k, n]`: bf16 inputs, float32 accumulation and output.

  The backward pass also multiplies in bf16: `dx = g @ w.T` and `dw = x.T @ g`, with
  the transposes materialised, so all three matmuls of a layer run on bf16 kernels on
  a CPU with them (plain autodiff leaves the weight gradient as a float32 dot on a
  transposed operand). Cotangents are float32. On GPU/TPU it is an ordinary bf16 matmul.
  Reverse mode only (`jax.grad`, `jax.vjp`, `jax.jacrev`), like any `custom_vjp`.
  """
  return _dot(_bf16(x), _bf16(w))


def _bf16_matmul_fwd(x, w):
  return bf16_matmul(x, w), (x, w)


def _bf16_matmul_bwd(residuals, g):
  x, w = residuals
  g = _bf16(g)
  return _dot(g, _bf16(w.T)), _dot(_bf16(x.T), g)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`nn.Dense`'s contraction `[..., k] x [k, n] -> [..., n]` through `bf16_matmul`."""
  del precision, preferred_element_type
  assert dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())), dimension_numbers
  out = bf16_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
  return out.reshape(*lhs.shape[:-1], rhs.shape[-1])


def dense(features: int, precision: str) -> nn.Dense:
  """A Dense layer; 'bf16' multiplies in bf16 (`bf16_matmul`) and accumulates in float32.

  Parameters, bias and output stay float32 either way (so do the optimizer state and the loss).
  """
  if precision == 'bf16':
    return nn.Dense(features, dot_general=_bf16_dot_general)
  return nn.Dense(features)


def conv(features: int, precision: str, transpose: bool = False) -> nn.Module:
  """A stride-2 4x4 'SAME' conv (or transposed conv), bf16 compute for 'bf16'."""
  cls = nn.ConvTranspose if transpose else nn.Conv
  dtype = jnp.bfloat16 if precision == 'bf16' else None
  return cls(features, KERNEL, strides=(2, 2), padding='SAME', dtype=dtype)


def matmul(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
  """`a @ b` for 2-D operands with float32 output; bf16 inputs (`bf16_matmul`) for 'bf16'."""
  if precision == 'bf16':
    return bf16_matmul(a, b)
  return jnp.matmul(a, b, preferred_element_type=jnp.float32)


def check_conv_shape(image_shape: Sequence[int], n_layers: int) -> None:
  """Raises ValueError unless H and W are divisible by 2**n_layers."""
  s = 2**n_layers
  h, w = image_shape[0], image_shape[1]
  if h % s or w % s:
    raise ValueError(
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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      h = self.activation(dense(width, self.precision)(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return dense(self.out_dim, self.precision)(h).astype(jnp.float32)


class MLPDecoder(nn.Module):
  """`[B, K] -> [B, H, W, C]`: ReLU hidden layers (in decoding order), linear output."""

  hidden: Sequence[int]
  image_shape: Sequence[int]
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    h = z
    for width in self.hidden:
      h = self.activation(dense(width, self.precision)(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    size = 1
    for d in self.image_shape:
      size *= d
    out = dense(size, self.precision)(h).astype(jnp.float32)
    return out.reshape((z.shape[0], *self.image_shape))


class ConvEncoder(nn.Module):
  """`[B, H, W, C] -> [B, out_dim]`: stride-2 4x4 convs (ReLU), then a linear layer."""

  features: Sequence[int]
  out_dim: int
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    h = x
    for f in self.features:
      h = self.activation(conv(f, self.precision)(h))
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return dense(self.out_dim, self.precision)(h.reshape(h.shape[0], -1)).astype(jnp.float32)


class ConvDecoder(nn.Module):
  """`[B, K] -> [B, H, W, C]`, mirroring `ConvEncoder(features)`.

  A linear layer to `[H/s, W/s, features[-1]]` (s = 2**len(features)), then
  stride-2 transposed convs back through the features in reverse; the last one
  outputs C channels without activation.
  """

  features: Sequence[int]
  image_shape: Sequence[int]
  dropout_rate: float = 0.0
  precision: str = 'f32'
  activation: Callable = nn.relu

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    height, width, channels = self.image_shape
    s = 2 ** len(self.features)
    rev = list(self.features[::-1])
    h = self.activation(dense(height // s * width // s * rev[0], self.precision)(z))
    h = h.reshape(z.shape[0], height // s, width // s, rev[0])
    for f in rev[1:] + [channels]:
      h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      out = conv(f, self.precision, transpose=True)(h)
      h = self.activation(out)
    return out.astype(jnp.float32)


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2, the discriminators' activation in the GAN and DCGAN papers."""
  return nn.leaky_relu(x, 0.2)


def make_encoder(arch: str, out_dim: int, hidden, conv_features, dropout_rate=0.0, precision='f32',
                 activation=nn.relu):
  """Builds the encoder named by `arch` ('mlp' or 'conv'); discriminators are encoders to one logit."""
  if arch == 'conv':
    return ConvEncoder(tuple(conv_features), out_dim, dropout_rate, precision, activation)
  return MLPEncoder(tuple(hidden), out_dim, dropout_rate, precision, activation)


def make_decoder(arch: str, image_shape, hidden, conv_features, dropout_rate=0.0, precision='f32',
                 activation=nn.relu):
  """Builds the decoder mirroring `make_encoder(arch, ...)`; generators are decoders from noise."""
  if arch == 'conv':
    return ConvDecoder(tuple(conv_features), tuple(image_shape), dropout_rate, precision, activation)
  return MLPDecoder(tuple(hidden[::-1]), tuple(image_shape), dropout_rate, precision, activation)


_DN = ('NHWC', 'HWIO', 'NHWC')


def _add_bias(h: jax.Array, b: jax.Array) -> jax.Array:
  """`h: [..., F] + b: [F]` with the broadcast written out (strict rank promotion)."""
  return h + b.reshape((1,) * (h.ndim - 1) + (-1,))


class TiedAutoencoder(nn.Module):
  """Autoencoder whose decoder uses the encoder's kernels transposed (W* = W^T).

  The params hold one kernel per tied layer pair, `kernel_i`, with separate
  `encoder_bias_i` and `decoder_bias_i`. With `conv_features`, the conv layers
  are tied too: the decoder applies the exact adjoint of each strided conv
  (`lax.conv_transpose(..., transpose_kernel=True)`).

  References:
    Vincent et al., Stacked Denoising Autoencoders, JMLR 2010, Sec. 2.3.
  """

  image_shape: Sequence[int]
  latent_dim: int
  hidden: Sequence[int] = ()
  conv_features: Sequence[int] = ()
  input_dropout: float = 0.0
  dropout_rate: float = 0.0
  precision: str = 'f32'

  def setup(self):
    height, width, channels = self.image_shape
    chans = [channels, *self.conv_features]
    init = nn.initializers.lecun_normal()
    self.conv_kernels = [
        self.param(f'kernel_{i}', init, (*KERNEL, chans[i], chans[i + 1]))
        for i in range(len(self.conv_features))
    ]
    s = 2 ** len(self.conv_features)
    self.conv_shape = (height // s, width // s, chans[-1])
    flat = self.conv_shape[0] * self.conv_shape[1] * self.conv_shape[2]
    dims = [flat, *self.hidden, self.latent_dim]
    n_conv = len(self.conv_kernels)
    self.dense_kernels = [
        self.param(f'kernel_{n_conv + i}', init, (dims[i], dims[i + 1]))
        for i in range(len(dims) - 1)
    ]
    n = n_conv + len(self.dense_kernels)
    out_sizes = [c for c in chans[1:]] + dims[1:]
    in_sizes = chans[:-1] + dims[:-1]
    self.encoder_biases = [
        self.param(f'encoder_bias_{i}', nn.initializers.zeros, (out_sizes[i],)) for i in range(n)
    ]
    self.decoder_biases = [
        self.param(f'decoder_bias_{i}', nn.initializers.zeros, (in_sizes[i],)) for i in range(n)
    ]
    self.input_drop = nn.Dropout(self.input_dropout)
    self.hidden_drop = nn.Dropout(self.dropout_rate)

  def _conv(self, h, k, transpose=False):
    """Stride-2 'SAME' conv with kernel k, or its exact adjoint; float32 output."""
    if self.precision == 'bf16':
      h, k = h.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
    if transpose:
      return jax.lax.conv_transpose(h, k, (2, 2), 'SAME', dimension_numbers=_DN, transpose_kernel=True,
                                    preferred_element_type=jnp.float32)
    return jax.lax.conv_general_dilated(h, k, (2, 2), 'SAME', dimension_numbers=_DN,
                                        preferred_element_type=jnp.float32)

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    """`[B, H, W, C] -> [B, latent_dim]`."""
    h = self.input_drop(x, deterministic=not train)
    for k, b in zip(self.conv_kernels, self.encoder_biases[: len(self.conv_kernels)], strict=True):
      h = _add_bias(self._conv(h, k), b)
      h = self.hidden_drop(nn.relu(h), deterministic=not train)
    h = h.reshape(h.shape[0], -1)
    n_conv, n_dense = len(self.conv_kernels), len(self.dense_kernels)
    for i, k in enumerate(self.dense_kernels):
      h = _add_bias(matmul(h, k, self.precision), self.encoder_biases[n_conv + i])
      if i < n_dense - 1:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    return h

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """`[B, latent_dim] -> [B, H, W, C]` using the transposed encoder kernels."""
    n_conv = len(self.conv_kernels)
    h = z
    for i in reversed(range(len(self.dense_kernels))):
      h = _add_bias(matmul(h, self.dense_kernels[i].T, self.precision), self.decoder_biases[n_conv + i])
      if i > 0 or n_conv:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    h = h.reshape(z.shape[0], *self.conv_shape)
    for i in reversed(range(n_conv)):
      h = _add_bias(self._conv(h, self.conv_kernels[i], transpose=True), self.decoder_biases[i])
      if i > 0:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    return h.reshape((z.shape[0], *self.image_shape))

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.decode(self.encode(x, train), train)
