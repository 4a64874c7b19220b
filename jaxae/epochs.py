"""Compiled training and evaluation passes: one guarded step, scanned (resident) or streamed.

Resident: the data sit on the device and a chunk of steps (by default a whole
epoch) is one compiled `lax.scan`. Streaming: the data stay on the host (or on
disk, `jaxae.records`); grain threads read groups of batches ahead, and each
group is sent to the device and scanned by one compiled call. Both follow the same batch
order (`fold_in(keys.shuffle, epoch)`), draw step `t`'s randomness from
`fold_in(keys.step, t)`, pad the last batch with a mask, and return metric sums.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import data, guard, parallel, prng, steps

REPLAY = -2  # Guard.bad_step of an unguarded chunk that met a non-finite value: rerun it guarded


class Keys(NamedTuple):
  """The run's named keys, all split once from the seed."""

  init: jax.Array
  shuffle: jax.Array
  step: jax.Array
  binarize: jax.Array
  eval: jax.Array
  vis: jax.Array


def make_keys(seed: int) -> Keys:
  """The keys `jax.random.key(seed)` splits into, as `prng.key`s (the same bits, drawn faster on CPU)."""
  return Keys(*jax.random.split(prng.key(seed), len(Keys._fields)))


def batch_indices(key: jax.Array | None, n: int, batch_size: int):
  """A (shuffled if key) order of `n` examples padded to whole batches.

  Returns:
    `(index [n_batches, batch_size] int32, mask [n_batches, batch_size] float32)`;
    padding repeats earlier examples with mask 0.
  """
  n_batches = -(-n // batch_size)
  order = jnp.arange(n) if key is None else jax.random.permutation(key, n)
  flat = jnp.arange(n_batches * batch_size)
  index = order[flat % n].reshape(n_batches, batch_size)
  mask = (flat < n).astype(jnp.float32).reshape(n_batches, batch_size)
  return index, mask


def chunk_indices(key, n: int, batch_size: int, chunk: int, start):
  """Batches `[start, start + chunk)` of the epoch order from `key`, padded with all-masked batches."""
  index, mask = batch_indices(key, n, batch_size)
  pad = -index.shape[0] % chunk
  index = jnp.concatenate([index, jnp.zeros((pad, batch_size), index.dtype)])
  mask = jnp.concatenate([mask, jnp.zeros((pad, batch_size), mask.dtype)])
  return tuple(jax.lax.dynamic_slice_in_dim(a, start, chunk) for a in (index, mask))


def _inputs(state, x, m, keys: Keys, dynamic_binarize: bool, mesh):
  """Step `state.step`'s batch (sharded, uint8 pixels made float32, dynamically binarized if asked) and its key
  `fold_in(keys.step, step)`."""
  x, m = data.to_float(parallel.shard_batch(x, mesh)), parallel.shard_batch(m, mesh)
  if dynamic_binarize:
    x = jax.random.bernoulli(jax.random.fold_in(keys.binarize, state.step), x).astype(x.dtype)
  return x, m, jax.random.fold_in(keys.step, state.step)


def _step(train_step, state, g, x, m, keys: Keys, dynamic_binarize: bool, skip_nonfinite: bool, mesh):
  """One guarded step on batch `x` with mask `m`: `(state, guard, count-weighted metrics with 'count')`."""
  x, m, key = _inputs(state, x, m, keys, dynamic_binarize, mesh)
  state, g, step_metrics, applied = guard.guarded_step(
      train_step, state, g, {'image': x, 'mask': m}, key, skip_nonfinite=skip_nonfinite)
  count = jnp.sum(m) * applied
  return state, g, {**{k: v * count for k, v in step_metrics.items()}, 'count': count}


def _unguarded_step(train_step, state, x, m, keys: Keys, dynamic_binarize: bool, mesh):
  """`_step` without the guard: the same update and count-weighted metrics when every value is finite."""
  x, m, key = _inputs(state, x, m, keys, dynamic_binarize, mesh)
  state, step_metrics = train_step(state, {'image': x, 'mask': m}, key)
  count = jnp.sum(m)
  return state, {**{k: v * count for k, v in step_metrics.items()}, 'count': count}


def _scan_steps(train_step, state, g, batches, get, keys: Keys, *, guarded: bool, dynamic_binarize: bool,
                skip_nonfinite: bool, mesh):
  """A `lax.scan` of steps over `batches` `(a [steps, ...], mask [steps, B])`, step `t`'s images `get(a[t])`,
  guard `g` carried in. Returns `(state, guard, metric sums with 'count')`."""

  def body(carry, batch):
    state, g = carry
    x, m = get(batch[0]), batch[1]
    if guarded:
      state, g, weighted = _step(train_step, state, g, x, m, keys, dynamic_binarize, skip_nonfinite, mesh)
    else:
      state, weighted = _unguarded_step(train_step, state, x, m, keys, dynamic_binarize, mesh)
    return (state, g), weighted

  (state, g), per_step = jax.lax.scan(body, (state, g), batches)
  return state, g, jax.tree.map(lambda v: jnp.sum(v, axis=0), per_step)


def train_chunk(train_step, state, images, epoch, start, keys: Keys, *, batch_size: int, chunk: int,
                dynamic_binarize: bool = False, skip_nonfinite: bool = False, mesh=None, guarded: bool = True):
  """Batches `[start, start + chunk)` of epoch `epoch` over `images` ([N, H, W, C], on device).

  The epoch's batch order comes from `fold_in(keys.shuffle, epoch)`; batches
  past its end are all-masked no-ops, so one compiled chunk size serves every
  chunk. With `chunk` = batches per epoch and `start` = 0 this is a whole epoch.
  With a `mesh`, each batch is split over its 'data' axis (data parallelism).

  `guarded=False` (only for chunks without all-masked padding batches) runs the
  steps without the per-step guard; a non-finite metric or final parameter then
  sets `Guard.bad_step` to `REPLAY`, and the caller reruns the chunk guarded
  from the same state (`compile_fns` does), which gives the guarded result.

  Returns:
    `(state, metric sums with 'count' and 'skipped_steps', Guard)`.
  """
  index, mask = chunk_indices(jax.random.fold_in(keys.shuffle, epoch), images.shape[0], batch_size, chunk, start)
  state, g, sums = _scan_steps(train_step, state, guard.init(), (index, mask), lambda i: images[i], keys,
                               guarded=guarded, dynamic_binarize=dynamic_binarize, skip_nonfinite=skip_nonfinite,
                               mesh=mesh)
  if not guarded:
    finite = guard.all_finite(sums) & guard.all_finite(state.params)
    g = g._replace(bad_step=jnp.where(finite, g.bad_step, REPLAY))
  return state, {**sums, 'skipped_steps': g.skipped.astype(jnp.float32)}, g


def replayed(fast_fn, guarded_fn):
  """`chunk_fn` that runs `fast_fn` (unguarded, state not donated) and, when it reports a non-finite value
  (`REPLAY`), reruns the chunk with `guarded_fn` from the same input state: the guard's exact result
  (the first bad step, the state frozen before it or the bad updates skipped) at the bare step's speed."""

  def chunk_fn(state, images, epoch, start, keys):
    new, sums, g = fast_fn(state, images, epoch, start, keys)
    if int(g.bad_step) == REPLAY:  # the loop syncs once per chunk anyway
      return guarded_fn(state, images, epoch, start, keys)
    return new, sums, g

  chunk_fn._cache_size = lambda: fast_fn._cache_size() + guarded_fn._cache_size()  # programs compiled, as jit's
  return chunk_fn


class StreamFns(NamedTuple):
  """The compiled group scans of streaming, `(state, guard, sums, xs [k, B, ...], ms [k, B], keys) -> (state,
  guard, sums + the group's)`: `fast` unguarded (state kept, for a replay), `guarded` (state donated); and
  `finite(sums, params)`."""

  fast: Any
  guarded: Any
  finite: Any

  def _cache_size(self) -> int:
    return self.fast._cache_size() + self.guarded._cache_size()


def make_stream_fns(train_step, *, dynamic_binarize: bool = False, skip_nonfinite: bool = False,
                    mesh=None) -> StreamFns:
  """`StreamFns` for `train_step`, each compiled once (on its first group)."""

  def group(guarded, state, g, sums, xs, ms, keys):
    state, g, group_sums = _scan_steps(train_step, state, g, (xs, ms), lambda x: x, keys, guarded=guarded,
                                       dynamic_binarize=dynamic_binarize, skip_nonfinite=skip_nonfinite, mesh=mesh)
    return state, g, jax.tree.map(jnp.add, sums, group_sums)

  return StreamFns(jax.jit(functools.partial(group, False), donate_argnums=2),
                   jax.jit(functools.partial(group, True), donate_argnums=(0, 2)),
                   jax.jit(lambda sums, params: guard.all_finite(sums) & guard.all_finite(params)))


def read_groups(images, index: np.ndarray, mask: np.ndarray, group: int, threads: int):
  """Host groups `(xs [group, b, H, W, C], ms [group, b], k)` of batches `images[index[t]]`, `group` at a time
  (the last padded with all-masked batches; `k` real), read and gathered ahead by `threads` grain threads.
  Rows with mask 0 are zeros, not read: each example is read once an epoch.

  `images`: a NumPy array or lazy `jaxae.records.Images`; `index`, `mask`: `[steps, b]`, a process's rows.
  """
  import grain

  def read(start):
    i, m = index[start:start + group], mask[start:start + group]
    m = np.pad(m, ((0, group - len(m)), (0, 0)))
    if m.all():
      return np.asarray(images[i.ravel()]).reshape(*m.shape, *images.shape[1:]), m, group
    xs = np.zeros((*m.shape, *images.shape[1:]), images.dtype)
    xs[m > 0] = images[i[m[:len(i)] > 0]]  # masked-out rows (an epoch's padding) are not read: zeros, weight 0
    return xs, m, len(i)

  starts = grain.MapDataset.source(range(0, len(index), group)).map(read)
  return iter(starts.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=threads)))


def _stream_pass(fns: StreamFns, guarded: bool, state, zero: dict, images, index, mask, keys: Keys, *,
                 batch_size: int, group: int, threads: int, mesh):
  """One pass over a chunk's batches, group by group: unguarded (`fns.fast`, the padded last group guarded) or
  guarded throughout. Returns `(state, sums, guard)`."""
  g, sums = parallel.replicate((guard.init(), {k: v for k, v in zero.items() if k != 'skipped_steps'}), mesh)
  first, in_flight = state, g
  for xs, ms, k in read_groups(images, index, mask, group, threads):
    fn = fns.fast if k == group and not guarded else fns.guarded
    if fn is fns.guarded and state is first and not guarded:
      state = jax.tree.map(jnp.copy, state)  # the guarded scan donates its input: keep the chunk's for a replay
    xs, ms = (parallel.from_process_rows(a, batch_size, mesh, axis=1) for a in (xs, ms))
    previous, (state, g, sums) = g, fn(state, g, sums, xs, ms, keys)
    jax.block_until_ready(in_flight)  # at most two groups queued: dispatch does not run ahead through the epoch
    in_flight = previous
  return state, sums, g


def stream_chunk(fns: StreamFns, zero: dict, state, images, epoch, start, keys: Keys, *, batch_size: int,
                 chunk: int, group: int = 16, threads: int = 4, mesh=None):
  """`train_chunk` for data kept on the host or on disk: the same batches and keys, sent to the device `group`
  at a time and scanned there.

  `fns` is `make_stream_fns(...)`, `zero` is `zero_sums(...)`. All-masked padding
  batches are not read. The chunk runs unguarded (as `replayed` does) and is rerun
  guarded from the same state when it meets a non-finite value. With a `mesh`, each
  process reads and sends only the rows of its own devices (`parallel.process_rows`).
  """
  index, mask = jax.device_get(chunk_indices(jax.random.fold_in(keys.shuffle, epoch), images.shape[0],
                                             batch_size, chunk, start))
  real = int(mask.any(axis=1).sum())  # padding batches come last
  rows = parallel.process_rows(batch_size, mesh)
  index, mask = index[:real, rows], mask[:real, rows]
  options = dict(batch_size=batch_size, group=group, threads=threads, mesh=mesh)
  new, sums, g = _stream_pass(fns, False, state, zero, images, index, mask, keys, **options)
  if int(g.bad_step) >= 0 or not bool(fns.finite(sums, new.params)):
    new, sums, g = _stream_pass(fns, True, state, zero, images, index, mask, keys, **options)
  return new, {**sums, 'skipped_steps': g.skipped.astype(jnp.float32)}, g


def zero_sums(train_step, state, x, keys: Keys) -> dict:
  """Zero metric sums, with 'count' and 'skipped_steps', shaped as the chunk functions return them."""
  m = jnp.ones(x.shape[0])
  shapes = jax.eval_shape(lambda s, x: _step(train_step, s, guard.init(), x, m, keys, False, False, None)[2],
                          state, x)
  return {**{k: np.zeros(v.shape, v.dtype) for k, v in shapes.items()}, 'skipped_steps': np.zeros((), np.float32)}


def _eval_batch(eval_step, state, x, m, key, b, mesh):
  """Eval batch `b` (uint8 pixels made float32) draws from `fold_in(key, b)`."""
  x, m = data.to_float(parallel.shard_batch(x, mesh)), parallel.shard_batch(m, mesh)
  return eval_step(state, {'image': x, 'mask': m}, jax.random.fold_in(key, b))


def evaluate(eval_step, state, images, key, *, batch_size: int, mesh=None):
  """Metric sums (with 'count') of `eval_step` over all of `images`; batch b uses `fold_in(key, b)`.

  Batches are always `batch_size` (padded, masked), so a stochastic evaluation
  draws the same numbers whatever the number of devices.
  """
  images = jnp.asarray(images)
  index, mask = batch_indices(None, images.shape[0], batch_size)

  def body(_, inputs):
    b, i, m = inputs
    return None, _eval_batch(eval_step, state, images[i], m, key, b, mesh)

  _, per_batch = jax.lax.scan(body, None, (jnp.arange(index.shape[0]), index, mask))
  return jax.tree.map(lambda v: jnp.sum(v, axis=0), per_batch)


def stream_evaluate(batch_fn, state, images: np.ndarray, key, *, batch_size: int, mesh=None):
  """`evaluate` for data kept on the host; `batch_fn` is the jitted `_eval_batch`."""
  index, mask = jax.device_get(batch_indices(None, images.shape[0], batch_size))
  sums = [batch_fn(state, parallel.global_batch(images[i], mesh), parallel.global_batch(m, mesh), key, b)
          for b, (i, m) in enumerate(zip(index, mask, strict=True))]
  return jax.tree.map(lambda *v: sum(v), *sums)


def chunk_size(config, n_train: int) -> tuple[int, int]:
  """`(steps per chunk, chunks per epoch)`: one chunk per epoch unless `checkpoint_every` is set."""
  steps_per_epoch = -(-n_train // config['batch_size'])
  chunk = min(config['checkpoint_every'] or steps_per_epoch, steps_per_epoch)
  return chunk, -(-steps_per_epoch // chunk)


def compile_fns(model, config, n_train: int, mesh=None, zero: dict | None = None, resident: bool = True):
  """The chunk and evaluation functions, hyperparameters bound, compiled once, state donated.

  Resident: `chunk_fn(state, images, epoch, start, keys)` is one compiled scan
  over device-resident images, unguarded and replayed guarded only if it meets
  a non-finite value (`replayed`); with padding batches (`checkpoint_every` not
  dividing the epoch), guarded throughout. Streaming (`resident=False`, `zero` from
  `zero_sums`): the same signature over host images, one compiled step per batch.
  """
  train_step, eval_step = steps.bind(model.train_step, config), steps.bind(model.eval_step, config)
  chunk = chunk_size(config, n_train)[0]
  options = dict(dynamic_binarize=config['binarize'] == 'dynamic', skip_nonfinite=config['nonfinite'] == 'skip',
                 mesh=mesh)
  if resident:
    chunk_fn = functools.partial(train_chunk, train_step, batch_size=config['batch_size'], chunk=chunk, **options)
    eval_fn = jax.jit(functools.partial(evaluate, eval_step, batch_size=config['eval_batch_size'], mesh=mesh))
    guarded_fn = jax.jit(chunk_fn, donate_argnums=0)
    if -(-n_train // config['batch_size']) % chunk:  # padding batches: every chunk guarded
      return guarded_fn, eval_fn
    return replayed(jax.jit(functools.partial(chunk_fn, guarded=False)), guarded_fn), eval_fn
  chunk_fn = functools.partial(stream_chunk, make_stream_fns(train_step, **options), zero,
                               batch_size=config['batch_size'], chunk=chunk, group=config['stream_steps'],
                               threads=config['read_threads'], mesh=mesh)
  batch_fn = jax.jit(functools.partial(_eval_batch, eval_step, mesh=mesh))
  return chunk_fn, functools.partial(stream_evaluate, batch_fn, batch_size=config['eval_batch_size'], mesh=mesh)
