"""Data parallelism with `jax.sharding`: a 1-D 'data' mesh over the devices of every process (all, or `devices`).

Params and optimizer state are replicated, each batch is split along its
first axis, and XLA's SPMD partitioner inserts the gradient all-reduce. One
device is the same code with a mesh of one. Several processes (hosts) run the
same program after `initialize_distributed()`: every process loads the same
data and draws the same keys, so each only places the rows of a batch that
belong to its own devices; process 0 writes the files (`is_primary`).
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxae.errors import UserError, require


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run (`jax.distributed.initialize`); call before any other JAX work.

  With no arguments the cluster is detected from its environment (SLURM, Open
  MPI, Cloud TPU, Kubernetes...). On CPU, cross-process collectives use gloo.

  Raises:
    UserError: inconsistent arguments, or the cluster could not be joined.
  """
  manual = (coordinator, num_processes, process_id)
  require(all(v is None for v in manual) or all(v is not None for v in manual),
          'give --coordinator, --num-processes and --process-id together (or none of them, to detect the cluster)')
  if num_processes is not None and process_id is not None:  # given together (above)
    require(num_processes >= 1 and 0 <= process_id < num_processes,
            f'--process-id {process_id} is not in 0..{num_processes - 1}; number the processes 0 to '
            '--num-processes - 1')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  try:
    jax.distributed.initialize(coordinator, num_processes, process_id)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f'cannot join the distributed run ({first}); check --coordinator, --num-processes and '
                    '--process-id, or run under a cluster manager JAX detects') from None


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0; always true on one host)."""
  return jax.process_index() == 0


def make_mesh(devices: int = 0) -> Mesh:
  """A 1-D mesh named 'data' (Auto axis: XLA propagates the shardings) over `devices` devices (0: all), ordered by
  (process, device id): each process's devices hold contiguous rows of a batch, on any topology. With several
  processes each contributes `devices / processes` of its own devices.

  Raises:
    UserError: more devices than there are, or a count the processes cannot share evenly.
  """
  n, processes = devices or jax.device_count(), jax.process_count()
  require(n <= jax.device_count(), f'devices={n} but this run has {jax.device_count()}; use at most that, or 0 '
          'for all')
  require(n % processes == 0, f'devices={n} does not split over {processes} processes; use a multiple of '
          f'{processes}, or 0 for all')
  per_process = n // processes
  chosen = [d for p in range(processes)
            for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:per_process]]
  return Mesh(np.array(chosen), ('data',), axis_types=(AxisType.Auto,))


def check_batch_size(name: str, batch_size: int, mesh: Mesh) -> None:
  """`UserError` unless `batch_size` splits evenly over the devices of `mesh`."""
  n = mesh.devices.size
  require(batch_size % n == 0, f'{name} {batch_size} does not split over {n} devices; use a multiple of {n}')


def replicate(tree, mesh: Mesh | None):
  """Places every leaf of `tree` (the same on every process) on every device of `mesh`
  (without a mesh, on the default device).

  Each process copies its own host (or device) values onto its own devices (`make_array_from_callback`): no
  process sends or compares anything with another, as a `device_put` onto a multi-process sharding would (it
  gathers the whole array to check that all processes hold the same). PRNG keys travel as their key data.
  """
  sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec())

  def put(x):
    if jax.dtypes.issubdtype(getattr(x, 'dtype', None), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if sharding is None:
      return jax.device_put(x)
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def global_batch(x: np.ndarray, mesh: Mesh | None):
  """A host batch `[B, ...]` (the same on every process) split over the 'data' axis; each process
  transfers only its own devices' rows. Without a mesh, `x` as is."""
  if mesh is None:
    return x
  return jax.make_array_from_callback(x.shape, NamedSharding(mesh, PartitionSpec('data')), lambda index: x[index])


def process_rows(batch_size: int, mesh: Mesh | None) -> slice:
  """The rows `[start, stop)` of a global batch that this process's devices hold (all rows without a mesh):
  what a process reads when each reads only its own share."""
  if mesh is None:
    return slice(0, batch_size)
  spans = [s for s in NamedSharding(mesh, PartitionSpec('data')).addressable_devices_indices_map((batch_size,))
           .values() if s is not None]
  start, stop = min(s[0].start or 0 for s in spans), max(s[0].stop or batch_size for s in spans)
  if (stop - start) * jax.process_count() != batch_size:  # `make_mesh` orders devices by process: not with it
    raise ValueError(f'the devices of process {jax.process_index()} hold rows {start}..{stop - 1} of {batch_size} '
                     'with other processes\' rows between them: build the mesh with parallel.make_mesh')
  return slice(start, stop)


def from_process_rows(x: np.ndarray, batch_size: int, mesh: Mesh | None, axis: int = 0):
  """The global array whose `axis` (of global size `batch_size`) is split over 'data', from this process's rows
  `x` (`process_rows`); the other axes are whole. Without a mesh, `x` as is."""
  if mesh is None:
    return x
  spec = PartitionSpec(*([None] * axis), 'data')
  shape = (*x.shape[:axis], batch_size, *x.shape[axis + 1:])
  return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), x, shape)


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
  """Inside jit: split `x` along its first (batch) axis over the 'data' axis (as is without a mesh)."""
  if mesh is None:
    return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec('data')))


def fits_on_device(nbytes: int, fraction: float = 0.5) -> bool:
  """Whether `nbytes` take less than `fraction` of the first local device's memory (True if unknown, e.g. CPU)."""
  limit = (jax.local_devices()[0].memory_stats() or {}).get('bytes_limit')
  return limit is None or nbytes < fraction * limit
