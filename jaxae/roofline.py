"""What the hardware can do, measured in the same process: the matmul peak and peak memory.

Speed is reported as a fraction of `matmul_peak` (the rate of one large matmul
on this device and precision), so numbers taken on noisy, shared or different
machines stay comparable.
"""

import resource
import time

import jax
import jax.numpy as jnp


def matmul_peak(precision: str = 'f32', size: int | None = None, repeats: int = 10, calls: int | None = None
                ) -> float:
  """GFLOP/s of a [size, size] @ [size, size] matmul (bf16 inputs with f32 accumulation for 'bf16'); best of
  `repeats` timings, each over `calls` matmuls dispatched back to back and synced once.

  Defaults by backend: on CPU one 2048^3 matmul per timing; on an accelerator, where that takes tens of
  microseconds and the dispatch would dominate, 8192^3 and 10 calls per timing.
  """
  accelerator = jax.default_backend() != 'cpu'
  size = size or (8192 if accelerator else 2048)
  calls = calls or (10 if accelerator else 1)
  a = jax.random.normal(jax.random.key(0), (size, size))
  b = jax.random.normal(jax.random.key(1), (size, size))
  if precision == 'bf16':
    a, b = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready([f(a, b) for _ in range(calls)])
    times.append((time.perf_counter() - t0) / calls)
  return 2 * size**3 / min(times) / 1e9


def peak_memory_bytes() -> tuple[int, str]:
  """`(bytes, kind)`: the device's peak bytes in use where the backend reports it, else the host's max RSS."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use']), 'device peak'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'host max RSS'


def compiled_memory_bytes(compiled) -> int:
  """Bytes XLA allocates for one call of a compiled function: arguments, outputs and temporaries."""
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def flops(compiled) -> float:
  """FLOPs XLA counts for one call of a compiled function (loop bodies counted once: use it on loop-free code)."""
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, list) else analysis
  return float(analysis.get('flops', 0.0))
