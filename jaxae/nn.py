"""Shared Flax linen blocks: MLP and convolutional encoders and decoders.

Images are `[B, H, W, C]` float32 everywhere; MLPs flatten them on entry and
decoders return the image shape. Decoders return unbounded outputs (Bernoulli
logits or Gaussian means); the loss decides how to read them.

Mixed precision (`precision='bf16'`) is Flax's: parameters, optimizer state and
losses stay float32; each dense or conv layer casts its input and parameters to
bf16 (`dtype=bfloat16`), its matmul or conv accumulates in float32 and returns
bf16; every network casts its output to float32. On XLA CPU alone (`cpu.active()`)
dense layers take `cpu.bf16_matmul` instead, whose dots that compiler's bf16
kernels run (its output, hence the activations, stay float32), and conv layers
`cpu.conv` / `cpu.conv_transpose` (in f32 and bf16 alike: see `conv`).
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import cpu
from jaxae.cpu import bf16_dot_general, bf16_matmul

KERNEL = (4, 4)  # conv kernel; stride 2 halves H and W per layer
PRECISIONS = ('f32', 'bf16')


def dense(features: int, precision: str) -> nn.Dense:
  """A Dense layer with float32 parameters; 'bf16' computes in bf16 with float32 accumulation (module docstring)."""
  if precision != 'bf16':
    return nn.Dense(features)
  if cpu.active():
    return nn.Dense(features, dot_general=bf16_dot_general)
  return nn.Dense(features, dtype=jnp.bfloat16)


def conv(features: int, precision: str, transpose: bool = False) -> nn.Module:
  """A stride-2 4x4 'SAME' conv (or transposed conv), bf16 compute for 'bf16'.

  On XLA CPU both take their gradients where that compiler is fast (`cpu.conv`, `cpu.conv_transpose`; the same
  functions and parameters as Flax's); elsewhere Flax's own.
  """
  dtype = jnp.bfloat16 if precision == 'bf16' else None
  if not cpu.active():
    cls = nn.ConvTranspose if transpose else nn.Conv
    return cls(features, KERNEL, strides=(2, 2), padding='SAME', dtype=dtype)
  if transpose:
    return ConvTranspose(features, dtype=dtype)
  return nn.Conv(features, KERNEL, strides=(2, 2), padding='SAME', dtype=dtype,
                 conv_general_dilated=cpu.conv_general_dilated)


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose(features, KERNEL, strides=(2, 2), padding='SAME', dtype=dtype)`: the same parameters
  ('kernel' `[4, 4, C_in, features]`, 'bias'), initialisers and outputs, computed by `cpu.conv_transpose`
  (the CPU-only speedup of its gradients); `[B, H, W, C_in] -> [B, 2H, 2W, features]`."""

  features: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (*KERNEL, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return cpu.conv_transpose(x, kernel, (2, 2)) + bias.reshape(1, 1, 1, -1)


def matmul(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
  """`a @ b` for 2-D operands; 'bf16' multiplies bf16 inputs with float32 accumulation, as `dense` does.

  The output is float32 for 'f32' and on CPU (`bf16_matmul`), bf16 for 'bf16' elsewhere.
  """
  if precision != 'bf16':
    return jnp.matmul(a, b, preferred_element_type=jnp.float32)
  if cpu.active():
    return bf16_matmul(a, b)
  return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))


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
