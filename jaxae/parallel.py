"""Data parallelism with `jax.sharding`: a 1-D 'data' mesh over every device.

Params and optimizer state are replicated, each batch is split along its
first axis, and XLA's SPMD partitioner inserts the gradient all-reduce. A
single device is the same code with a mesh of one. For several hosts, call
`initialize_distributed()` first (GPU/TPU clusters; not exercised on CPU).
"""

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxae.errors import require


def initialize_distributed() -> None:
  """`jax.distributed.initialize()` (coordinator from the cluster environment)."""
  jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D mesh named 'data' over all devices (Auto axis: XLA propagates the shardings)."""
  return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(AxisType.Auto,))


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
  """`UserError` unless `batch_size` splits evenly over the devices of `mesh`."""
  n = mesh.devices.size
  require(batch_size % n == 0, f'{name} {batch_size} does not split over {n} devices; use a multiple of {n}')


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` on every device of `mesh`."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  """Inside jit: split `x` along its first (batch) axis over the 'data' axis (as is without a mesh)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec('data')))


def fits_on_device(nbytes: int, fraction: float = 0.5) -> bool:
  """Whether `nbytes` of data take less than `fraction` of the first device's memory (True if unknown, e.g. CPU)."""
  limit = (jax.devices()[0].memory_stats() or {}).get('bytes_limit')
  return limit is None or nbytes < fraction * limit
