"""The CPU-only speedups: bf16 matmuls shaped for XLA's CPU compiler, chosen where `active()`.

Specific to XLA CPU (jaxlib 0.10): on GPU and TPU the compiler fuses plain bf16
dots itself, and the barriers below could only block those fusions, so there
`jaxae.nn` takes Flax's standard bf16 layers instead. `jaxae.nn.dense` and the tied
autoencoder call `bf16_matmul` for precision='bf16' on CPU alone.
"""

import jax
import jax.numpy as jnp


def active() -> bool:
  """Whether the CPU-only speedups apply: JAX's default backend is XLA CPU. Read when a network is traced.

  Tests force the other backends' branch on CPU by patching this function.
  """
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
  transposed operand). Cotangents are float32. Reverse mode only (`jax.grad`, `jax.vjp`,
  `jax.jacrev`), like any `custom_vjp`: off CPU, `jaxae.nn` uses plain bf16 dots, which
  forward mode (`jax.jvp`, `jax.jacfwd`, Hessians) also differentiates.
  """
  return _dot(_bf16(x), _bf16(w))


def _bf16_matmul_fwd(x, w):
  return bf16_matmul(x, w), (x, w)


def _bf16_matmul_bwd(residuals, g):
  x, w = residuals
  g = _bf16(g)
  return _dot(g, _bf16(w.T)), _dot(_bf16(x.T), g)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """`nn.Dense`'s contraction `[..., k] x [k, n] -> [..., n]` through `bf16_matmul`."""
  del precision, preferred_element_type
  assert dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())), dimension_numbers
  out = bf16_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
  return out.reshape(*lhs.shape[:-1], rhs.shape[-1])
