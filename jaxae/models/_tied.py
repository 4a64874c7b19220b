"""The tied-weight autoencoder network of the `ae` family (`tied=True`): W* = W^T, dense and conv layers."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxae import cpu
from jaxae.nn import KERNEL, matmul

_DN = ('NHWC', 'HWIO', 'NHWC')


def _add_bias(h: jax.Array, b: jax.Array) -> jax.Array:
  """`h: [..., F] + b: [F]` in `h`'s dtype, with the broadcast written out (strict rank promotion)."""
  return h + b.reshape((1,) * (h.ndim - 1) + (-1,)).astype(h.dtype)


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
  kernels: str = 'xla'  # `jaxae.cpu.resolve`: 'cpu' takes XLA CPU's fast conv gradients

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
    """Stride-2 'SAME' conv with kernel k, or its exact adjoint; for 'bf16' in bf16 (as Flax's `dtype`)."""
    if self.precision == 'bf16':
      h, k = h.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
    if self.kernels == 'cpu':  # the same functions, their kernel gradients where XLA CPU is fast
      return cpu.conv_transpose(h, cpu.flipped(k), (2, 2)) if transpose else cpu.conv(h, k, (2, 2))
    if transpose:
      return jax.lax.conv_transpose(h, k, (2, 2), 'SAME', dimension_numbers=_DN, transpose_kernel=True)
    return jax.lax.conv_general_dilated(h, k, (2, 2), 'SAME', dimension_numbers=_DN)

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    """`[B, H, W, C] -> [B, latent_dim]`."""
    h = self.input_drop(x, deterministic=not train)
    for k, b in zip(self.conv_kernels, self.encoder_biases[: len(self.conv_kernels)], strict=True):
      h = _add_bias(self._conv(h, k), b)
      h = self.hidden_drop(nn.relu(h), deterministic=not train)
    h = h.reshape(h.shape[0], -1)
    n_conv, n_dense = len(self.conv_kernels), len(self.dense_kernels)
    for i, k in enumerate(self.dense_kernels):
      h = _add_bias(matmul(h, k, self.precision, self.kernels), self.encoder_biases[n_conv + i])
      if i < n_dense - 1:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    return h.astype(jnp.float32)

  def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
    """`[B, latent_dim] -> [B, H, W, C]` using the transposed encoder kernels."""
    n_conv = len(self.conv_kernels)
    h = z
    for i in reversed(range(len(self.dense_kernels))):
      h = _add_bias(matmul(h, self.dense_kernels[i].T, self.precision, self.kernels), self.decoder_biases[n_conv + i])
      if i > 0 or n_conv:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    h = h.reshape(z.shape[0], *self.conv_shape)
    for i in reversed(range(n_conv)):
      h = _add_bias(self._conv(h, self.conv_kernels[i], transpose=True), self.decoder_biases[i])
      if i > 0:
        h = self.hidden_drop(nn.relu(h), deterministic=not train)
    return h.reshape((z.shape[0], *self.image_shape)).astype(jnp.float32)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.decode(self.encode(x, train), train)
