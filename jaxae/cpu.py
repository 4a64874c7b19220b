"""The CPU-only speedups, chosen once with `resolve(kernels)`: bf16 matmuls and convolutions shaped for XLA's CPU
compiler.

Specific to XLA CPU (jaxlib 0.10). On GPU and TPU the compiler fuses plain bf16
dots itself (the barriers below could only block those fusions) and runs convs and
their gradients on its own kernels, so there `jaxae.nn` takes Flax's standard layers.
On CPU alone `jaxae.nn.dense` and the tied autoencoder call `bf16_matmul` for
precision='bf16', and every conv layer is `conv` or `conv_transpose` (same functions
and parameters as Flax's, gradients as matmuls).
"""

import functools
import warnings

import jax
import jax.numpy as jnp

from jaxae.errors import require

KERNELS = ('auto', 'xla', 'cpu')
TESTED_JAXLIB = ((0, 10), (0, 11))  # [from, to): the jaxlib versions these kernels' workarounds were checked on


def resolve(kernels: str = 'auto', backend: str | None = None, jaxlib: str | None = None) -> str:
  """The kernels a run computes with, chosen once at setup: 'cpu' (this module's, XLA CPU only) or 'xla' (JAX's
  and Flax's own, on every backend; forward-mode AD works through them).

  'auto' takes 'cpu' on XLA CPU within `TESTED_JAXLIB` (outside it, 'xla' and one warning saying why), 'xla'
  elsewhere. `backend` and `jaxlib` default to this process's.

  Raises:
    UserError: an unknown name, or 'cpu' on another backend.
  """
  require(kernels in KERNELS, f"kernels={kernels!r} is not one of {', '.join(KERNELS)}")
  backend = backend or jax.default_backend()
  if kernels == 'cpu':
    require(backend == 'cpu', f"kernels=cpu are XLA CPU's, and this process computes on {backend}: use "
            'kernels=auto or xla')
    return 'cpu'
  if kernels == 'xla' or backend != 'cpu':
    return 'xla'
  version = tuple(int(v) for v in (jaxlib or jax.lib.__version__).split('.')[:2])
  if not TESTED_JAXLIB[0] <= version < TESTED_JAXLIB[1]:
    warnings.warn(f"kernels=auto: jaxae's CPU kernels were checked on jaxlib {TESTED_JAXLIB[0][0]}."
                  f"{TESTED_JAXLIB[0][1]}, not {'.'.join(map(str, version))}: JAX's own kernels are used "
                  '(kernels=cpu to take them anyway)', RuntimeWarning, stacklevel=2)
    return 'xla'
  return 'cpu'


def active() -> bool:
  """Deprecated (0.2.0): the kernels are a setting resolved once, `resolve(config['kernels'])`."""
  warnings.warn('jaxae.cpu.active() is deprecated: the kernels are a setting, jaxae.cpu.resolve(kernels)',
                DeprecationWarning, stacklevel=2)
  return jax.default_backend() == 'cpu'

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
  transposed operand). Cotangents have the inputs' dtypes. Reverse mode only (`jax.grad`, `jax.vjp`,
  `jax.jacrev`), like any `custom_vjp`: off CPU, `jaxae.nn` uses plain bf16 dots, which
  forward mode (`jax.jvp`, `jax.jacfwd`, Hessians) also differentiates.
  """
  return _dot(_bf16(x), _bf16(w))


def _bf16_matmul_fwd(x, w):
  return bf16_matmul(x, w), (x, w)


def _bf16_matmul_bwd(residuals, g):
  x, w = residuals
  g = _bf16(g)
  return _dot(g, _bf16(w.T)).astype(x.dtype), _dot(_bf16(x.T), g).astype(w.dtype)  # cotangents in the inputs' dtypes


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`nn.Dense`'s contraction `[..., k] x [k, n] -> [..., n]` through `bf16_matmul`."""
  del precision, preferred_element_type
  assert dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())), dimension_numbers
  out = bf16_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
  return out.reshape(*lhs.shape[:-1], rhs.shape[-1])


@jax.custom_vjp
def f32_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """`x @ w` for x `[M, k]`, w `[k, n]` (float32), with a weight gradient XLA CPU runs at its matmul speed.

  Autodiff's `dw = x.T @ g` contracts both operands' leading axis, which that compiler multiplies at half its
  rate or less where `x` is the wider operand (a conv's windows `[6272, 1024]` against its output gradient
  `[6272, 128]`: 21 ms against 11 here, in a scan). There this takes `dw = (g.T @ x).T`, with the narrow `g.T`
  and the product kept row-major (barriers), so the wide operand is read as it lies; elsewhere autodiff's.
  """
  return jnp.matmul(x, w)


def _f32_matmul_fwd(x, w):
  return f32_matmul(x, w), (x, w)


def _f32_matmul_bwd(residuals, g):
  x, w = residuals
  narrow_g = g.shape[1] < x.shape[1]
  dw = jax.lax.optimization_barrier(jax.lax.optimization_barrier(g.T) @ x).T if narrow_g else x.T @ g
  return g @ w.T, dw


f32_matmul.defvjp(_f32_matmul_fwd, _f32_matmul_bwd)


# Convolutions. XLA CPU (jaxlib 0.10) computes a convolution's kernel gradient as a convolution over the batch,
# on its fast (Eigen) path only outside loops: inside a `lax.scan` (every jaxae epoch) the kernel gradient of a
# 14x14x64 -> 7x7x128 stride-2 conv takes 1.9 s against 27 ms outside, and that of `lax.conv_transpose` is that
# slow everywhere. As one matmul of the input's windows (im2col) a conv and both its gradients are matmuls,
# which that compiler runs at its matmul speed in loops too (a DCGAN epoch of 2,560 images here: 2.55 s, against
# 4.65 s with only the kernel gradients as matmuls; README "Speed" has it beside PyTorch).
_DN = ('NHWC', 'HWIO', 'NHWC')


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
  """'SAME' padding `(low, high)` of a window `k`, stride `s` over `size` (XLA's rule)."""
  total = max((-(-size // s) - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _windows(x: jax.Array, kernel_shape, strides, out_hw) -> jax.Array:
  """The 'SAME' windows of `x` `[B, H, W, C_in]`: `[B*H'*W', kh*kw*C_in]`, in `_window_kernel`'s order.

  Through space-to-depth: the padded `x` cut into `sh x sw` blocks stacked on the channels, where a `kh x kw`
  stride-`s` conv is a `kh/sh x kw/sw` stride-1 one: 4 contiguous slices of the blocks instead of 16 strided
  slices of `x` for jaxae's 4x4 stride-2 convs (a conv with both gradients 15-40% faster here, in a scan).
  """
  (kh, kw), (sh, sw), (oh, ow) = kernel_shape[:2], strides, out_hw
  assert kh % sh == 0 and kw % sw == 0, (kernel_shape, strides)
  mh, mw = kh // sh, kw // sw
  b, h, w, c = x.shape
  hp, wp = (oh + mh - 1) * sh, (ow + mw - 1) * sw  # the 'SAME'-padded extent, a whole number of blocks
  top, left = _same_padding(h, kh, sh)[0], _same_padding(w, kw, sw)[0]
  xp = jnp.pad(x, [(0, 0), (top, hp - h - top), (left, wp - w - left), (0, 0)])
  blocks = xp.reshape(b, hp // sh, sh, wp // sw, sw, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      b, hp // sh, wp // sw, sh * sw * c)
  windows = jnp.stack([blocks[:, i:i + oh, j:j + ow] for i in range(mh) for j in range(mw)], axis=3)
  return windows.reshape(-1, kh * kw * c)


def _window_kernel(kernel: jax.Array, strides) -> jax.Array:
  """`kernel` `[kh, kw, C_in, F]` as `[kh*kw*C_in, F]` in `_windows`' order: tap (i*sh + dy, j*sw + dx) at
  row ((i, j), (dy, dx), c)."""
  kh, kw, c, f = kernel.shape
  (sh, sw) = strides
  return kernel.reshape(kh // sh, sh, kw // sw, sw, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(-1, f)


def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, strides, 'SAME')` (NHWC, HWIO; Flax's `nn.Conv`) as a matmul of the
  windows of `x` with the kernel through `f32_matmul` (`bf16_matmul` for bf16 inputs), so reverse mode only;
  kernel sizes divisible by the strides."""
  b, h, w, _ = x.shape
  out_hw = (-(-h // strides[0]), -(-w // strides[1]))
  matmul = bf16_matmul if x.dtype == jnp.bfloat16 else f32_matmul
  out = matmul(_windows(x, kernel.shape, strides, out_hw), _window_kernel(kernel, strides))
  return out.astype(x.dtype).reshape(b, *out_hw, kernel.shape[3])


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **unused):
  """`nn.Conv`'s convolution through `conv`, for the convs jaxae builds (no dilation or groups)."""
  del precision, unused
  canonical = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN)
  assert jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == canonical, dimension_numbers
  assert padding == 'SAME' and feature_group_count == 1, (padding, feature_group_count)
  assert set(lhs_dilation or (1,)) == set(rhs_dilation or (1,)) == {1}, (lhs_dilation, rhs_dilation)
  return conv(lhs, rhs, tuple(window_strides))


def flipped(k: jax.Array) -> jax.Array:
  """`k[kh-1-h, kw-1-w, o, i]`: the kernel whose strided convolution has `conv_transpose(., k)` as its adjoint."""
  return jnp.swapaxes(k[::-1, ::-1], 2, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """`lax.conv_transpose(x, kernel, strides, 'SAME')` (NHWC, HWIO; Flax's `nn.ConvTranspose`) for even kernels
  and strides that divide them, as the adjoint of the strided `conv` with the flipped kernel (its value: that
  conv's input gradient at cotangent `x`, 15-40% faster here than lax's), with both gradients that conv's:
  `dx = conv(g, flipped kernel)`, `dkernel` its kernel gradient at cotangent `x`. Reverse mode only
  (`custom_vjp`)."""
  b, h, w, _ = x.shape
  adjoint = functools.partial(conv, kernel=flipped(kernel), strides=strides)
  _, transpose = jax.vjp(adjoint, jnp.zeros((b, h * strides[0], w * strides[1], kernel.shape[3]), x.dtype))
  return transpose(x)[0]


def _conv_transpose_fwd(x, kernel, strides):
  return conv_transpose(x, kernel, strides), (x, kernel)


def _conv_transpose_bwd(strides, residuals, g):
  x, kernel = residuals
  dx, kernel_vjp = jax.vjp(lambda k: conv(g.astype(x.dtype), k, strides), flipped(kernel))
  return dx, flipped(kernel_vjp(x)[0])


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)
