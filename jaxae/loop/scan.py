"""The epoch as scans of `loop.step`: over device-resident data, or over groups streamed from the host.

`data` is `{'image': [N, H, W, C], 'label': [N] int32}` (labels -1 where unknown; a
caller may leave them out): every batch carries the rows of each entry at its
indices, and a 'mask'. Both paths follow the same batch order
(`fold_in(keys.shuffle, epoch)`), pad the last batch with a mask, and run the same
`scan_steps`: resident data are gathered inside the scan (`data[k][index[t]]`);
streamed groups arrive as `[k, B, ...]` arrays read ahead by grain threads. Both
return `(state, guard, metric sums with 'count')`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.data import batch_indices, to_float
from jaxae.loop import parallel
from jaxae.loop.step import init_guard


def chunk_indices(key, n: int, batch_size: int, chunk: int, start):
  """Batches `[start, start + chunk)` of the epoch order from `key`, padded with all-masked batches."""
  index, mask = batch_indices(key, n, batch_size)
  pad = -index.shape[0] % chunk
  index = jnp.concatenate([index, jnp.zeros((pad, batch_size), index.dtype)])
  mask = jnp.concatenate([mask, jnp.zeros((pad, batch_size), mask.dtype)])
  return tuple(jax.lax.dynamic_slice_in_dim(a, start, chunk) for a in (index, mask))


def scan_steps(step_fn, state, guard, batches, fetch=lambda b: b):
  """`lax.scan` of `step_fn((state, guard), fetch(batch_t)) -> ((state, guard), sums)` over the leading axis of
  `batches`; returns `(state, guard, summed sums)`."""
  (state, guard), per_step = jax.lax.scan(lambda carry, b: step_fn(carry, fetch(b)), (state, guard), batches)
  return state, guard, jax.tree.map(lambda v: jnp.sum(v, axis=0), per_step)


def resident_chunk(step_fn, state, data, epoch, start, shuffle_key, *, batch_size: int, chunk: int):
  """Batches `[start, start + chunk)` of epoch `epoch` over device-resident `data` (`{'image': [N, H, W, C],
  'label': [N]}`).

  Batches past the epoch's end are all-masked no-ops (the step must then `select`), so one compiled chunk size
  serves every chunk; with `chunk` = batches per epoch and `start` = 0 this is a whole epoch.
  """
  index, mask = chunk_indices(jax.random.fold_in(shuffle_key, epoch), data['image'].shape[0], batch_size, chunk,
                              start)
  fetch = lambda b: {**{k: v[b['index']] for k, v in data.items()}, 'mask': b['mask']}
  return scan_steps(step_fn, state, init_guard(), {'index': index, 'mask': mask}, fetch)


def read_groups(data, index: np.ndarray, mask: np.ndarray, group: int, threads: int):
  """Host groups `{'image': [group, b, H, W, C], 'label': [group, b], 'mask': [group, b]}` of batches
  `data[k][index[t]]`, `group` at a time (the last padded with all-masked batches), read and gathered ahead by
  `threads` grain threads. Rows with mask 0 are zeros, not read: each example is read once an epoch.

  `data`: `{name: NumPy array or lazy jaxae.data.records.Images}`; `index`, `mask`: `[steps, b]`, a process's
  rows.
  """
  import grain

  def gather(a, i, m):
    if m.all():
      return np.asarray(a[i.ravel()]).reshape(*m.shape, *a.shape[1:])
    xs = np.zeros((*m.shape, *a.shape[1:]), a.dtype)
    xs[m > 0] = a[i[m[:len(i)] > 0]]  # masked-out rows (an epoch's padding) are not read: zeros, weight 0
    return xs

  def read(start):
    i, m = index[start:start + group], mask[start:start + group]
    m = np.pad(m, ((0, group - len(m)), (0, 0)))
    return {**{k: gather(a, i, m) for k, a in data.items()}, 'mask': m}

  starts = grain.MapDataset.source(range(0, len(index), group)).map(read)
  return iter(starts.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)))


def streamed_chunk(full_fn, last_fn, state, data, epoch, start, keys, *, batch_size: int, chunk: int,
                   group: int = 16, threads: int = 4, mesh=None):
  """`resident_chunk` for data kept on the host or on disk: the same batches and keys, sent to the device
  `group` at a time and scanned there by `full_fn(state, guard, batches, keys) -> (state, guard, sums)`
  (compiled once, state donated), the last group, padded with all-masked batches, by `last_fn`; the groups'
  sums are added on the device. Padding batches are not read; with a `mesh`, each process reads and sends only
  the rows of its own devices (`parallel.process_rows`).
  """
  index, mask = jax.device_get(chunk_indices(jax.random.fold_in(keys.shuffle, epoch), data['image'].shape[0],
                                             batch_size, chunk, start))
  real = int(mask.any(axis=1).sum())  # padding batches come last
  rows = parallel.process_rows(batch_size, mesh)
  guard, sums, in_flight = parallel.replicate(init_guard(), mesh), None, None
  for g, batches in enumerate(read_groups(data, index[:real, rows], mask[:real, rows], group, threads)):
    batches = {k: parallel.from_process_rows(v, batch_size, mesh, axis=1) for k, v in batches.items()}
    fn = full_fn if (g + 1) * group <= real else last_fn
    previous, (state, guard, group_sums) = guard, fn(state, guard, batches, keys)
    sums = group_sums if sums is None else jax.tree.map(jnp.add, sums, group_sums)
    if in_flight is not None:
      jax.block_until_ready(in_flight)  # at most two groups queued: dispatch does not run ahead through the epoch
    in_flight = previous
  return state, guard, sums


def evaluate(eval_step, state, data, key, *, batch_size: int, mesh=None):
  """Metric sums (with 'count') of `eval_step(state, batch, key)` over all of `data` (`{'image': [N, H, W, C],
  'label': [N]}`, on the device: evaluation sets are small, so they are resident in both data modes); batch b
  draws from `fold_in(key, b)`.

  Batches are always `batch_size` (padded, masked), so a stochastic evaluation draws the same numbers whatever
  the number of devices.
  """
  data = {k: jnp.asarray(v) for k, v in data.items()}
  index, mask = batch_indices(None, data['image'].shape[0], batch_size)

  def body(_, inputs):
    b, i, m = inputs
    batch = {k: parallel.shard_batch(v[i], mesh) for k, v in data.items()}
    batch = {**batch, 'image': to_float(batch['image']), 'mask': parallel.shard_batch(m, mesh)}
    return None, eval_step(state, batch, jax.random.fold_in(key, b))

  _, per_batch = jax.lax.scan(body, None, (jnp.arange(index.shape[0]), index, mask))
  return jax.tree.map(lambda v: jnp.sum(v, axis=0), per_batch)
