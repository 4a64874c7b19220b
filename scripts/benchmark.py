"""Training-speed benchmark for every family: epoch time, examples/s, GFLOP/s, roofline fraction.

  python scripts/benchmark.py                       # all families, float32, MNIST-shaped data
  python scripts/benchmark.py --precision bf16 --models vae --out bench-bf16.json
  python scripts/benchmark.py --precision f32,bf16   # each family in both, back to back
  python scripts/benchmark.py --data-mode streaming  # batches from host memory, 16 per device call
  python scripts/benchmark.py --data-mode records    # the same, read from ArrayRecord files on disk
  python scripts/benchmark.py --models vae,dcgan --arch conv --torch   # conv nets beside PyTorch's, interleaved

Data: 59,904 (`--examples`) synthetic 28x28x1 uint8 images (468 batches of 128, as an MNIST epoch
without the last partial batch), kept uint8 and converted per batch as the loop does.
Every family uses the classic VAE shapes, 784-400-20(-400-784) (GANs: G 20-400-784 and D 784-400-1; the AAE's code
discriminator 20-400-1; dcgan its conv nets), Adam, one compiled `lax.scan` per epoch with the data
resident on the device (or, `--data-mode streaming`, groups of 16 batches
gathered on the host by grain threads, sent to the device and scanned; `--data-mode
records`, read from a records folder written to a temporary directory). Reported per family: compile time (the
first epoch's time less the median), the median of `--epochs` timed epochs after that
warm-up epoch, examples/s, the XLA-counted
FLOPs of one train step times the steps per epoch (counted with JAX's default key, so that
the random-number hashing, which `jaxae.prng` unrolls, is not counted as work), achieved GFLOP/s and its
fraction of a matmul peak measured in the same run on the same device, and
peak memory (device peak where the backend reports it, else host max RSS).

The reference: for each family, a bare `lax.scan` over the same epoch (same model,
optimizer, shuffled batches and per-step keys; no non-finite guard, no mask,
no metric sums but the headline), its epochs timed interleaved with jaxae's.
`overhead` is jaxae's median epoch over the bare one, minus 1.
On a GPU machine the same command measures the GPU (JAX picks it).
"""

import argparse
import functools
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import config as config_lib
from jaxae import data, errors, models, nn, results, roofline, steps
from jaxae.data import records
from jaxae.errors import ArgumentParser, UserError, require
from jaxae.loop import make_keys
from jaxae.loop.compile import compile_fns, matmul_precision

BATCH = 128  # the default --batch-size


def compiled_epoch(model, config, images, keys, data_mode: str):
  """`epoch_fn(state, epoch) -> (state, sums)` for resident or streaming data (compiled on its first call)."""
  n = images.shape[0]
  if data_mode != 'resident':
    images = np.asarray(images)
  if data_mode == 'records':  # the same images written to disk and read back as the loop asks for them
    folder = tempfile.mkdtemp(prefix='jaxae-bench-')
    records.write(folder, 'train', records.chunks_of(images))
    images = records.load(folder)['train']['image']
  fns = compile_fns(model, config, n, resident=data_mode == 'resident')
  return lambda state, epoch: (lambda s, g, sums: (s, sums))(*fns.chunk(state, {'image': images}, epoch, 0, keys))


def bare_scan_epoch(model, config, images, keys, batch: int = BATCH):
  """The reference epoch `(state, epoch) -> (state, headline sum)`: a bare scan of `train_step` over the epoch's
  whole shuffled batches (the last partial one dropped), keys `fold_in(keys.step, step)`, state donated."""
  train_step = steps.bind(model.train_step, config)
  n_batches = images.shape[0] // batch

  @functools.partial(jax.jit, donate_argnums=0)
  def epoch_fn(state, epoch):
    order = jax.random.permutation(jax.random.fold_in(keys.shuffle, epoch), images.shape[0])

    def body(state, i):
      x = data.to_float(images[i])
      state, metrics = train_step(state, {'image': x}, jax.random.fold_in(keys.step, state.step))
      return state, metrics[model.HEADLINE[0]]

    state, headline = jax.lax.scan(body, state, order[: n_batches * batch].reshape(n_batches, batch))
    return state, jnp.sum(headline)

  return epoch_fn


def bench_family(name: str, precision: str, n_epochs: int, images, data_mode: str = 'resident', batch: int = BATCH,
                 arch: str | None = None, torch=None) -> dict:
  n = images.shape[0]
  config = config_lib.resolve({'model': name, 'hidden': (400,), 'latent_dim': 20, 'batch_size': batch,
                               'precision': precision, **({'disc_hidden': (400,)} if name == 'aae' else {}),
                               **({'arch': arch} if arch and 'arch' in config_lib.defaults(name) else {})})
  model = models.get(name)
  keys = make_keys(0)
  x = data.to_float(images[:batch])
  state = models.create_state(model, keys.init, config, {'image': x[:1]})
  default_key = jax.random.wrap_key_data(jax.random.key_data(keys.step))  # JAX's rolled hash: not counted as FLOPs
  step_flops = roofline.flops(jax.jit(steps.bind(model.train_step, config)).lower(
      state, {'image': x, 'mask': jnp.ones(batch)}, default_key).compile())
  epoch_fn = compiled_epoch(model, config, images, keys, data_mode)
  bare_fn, bare_state = bare_scan_epoch(model, config, images, keys, batch), jax.tree.map(jnp.copy, state)
  t0 = time.perf_counter()
  bare_fn = bare_fn.lower(bare_state, 1).compile()  # the compile time of an epoch program, timed alone
  compile_s = time.perf_counter() - t0
  peer = torch_peer(torch, config, images) if torch is not None else None
  times, bare_times, torch_times = [], [], []
  for epoch in range(n_epochs + 1):  # the first is a warm-up; jaxae, the bare scan and PyTorch interleaved
    t0 = time.perf_counter()
    state, sums = epoch_fn(state, epoch + 1)
    float(sums['count'])  # waits for the epoch
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    bare_state, headline = bare_fn(bare_state, epoch + 1)
    float(headline)
    bare_times.append(time.perf_counter() - t0)
    if peer is not None:
      t0 = time.perf_counter()
      torch_loss = peer['epoch']()
      torch_times.append(time.perf_counter() - t0)
  epoch_s, bare_s = statistics.median(times[1:]), statistics.median(bare_times[1:])
  torch_row = {} if peer is None else {
      'torch_epoch_s_median': statistics.median(torch_times[1:]), 'torch_epoch_s_all': torch_times[1:],
      'torch_final_train': torch_loss, 'torch_parameters': peer['parameters'],
      'parameters': sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))}
  n_steps = -(-n // batch)
  flops = step_flops * n_steps
  return {'model': name, 'arch': config.get('arch', 'mlp'), 'precision': precision, 'data_mode': data_mode,
          'batch_size': batch, 'compile_s': compile_s, 'us_per_step': epoch_s / n_steps * 1e6, **torch_row,
          'epoch_s_median': epoch_s, 'epoch_s_all': times[1:], 'bare_scan_epoch_s_median': bare_s,
          'bare_scan_epoch_s_all': bare_times[1:], 'overhead': epoch_s / bare_s - 1, 'examples_per_s': n / epoch_s,
          'gflop_per_epoch': flops / 1e9, 'gflop_per_s': flops / epoch_s / 1e9,
          'final_train': {k: float(sums[k]) / float(sums['count']) for k in model.HEADLINE},
          'bare_scan_final_train': float(headline) / (n // batch)}


def torch_peer(torch, config: dict, images) -> dict | None:
  """PyTorch's epoch on the same images and networks (`scripts/torch_peers.py`), for conv families; else None."""
  import torch_peers  # noqa: PLC0415 (beside this script; it needs torch)

  if config.get('arch') != 'conv':
    return None
  nchw = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
  epoch = torch_peers.peer(torch, config, tuple(nchw.shape[1:]))
  return {'epoch': lambda: epoch(nchw), 'parameters': torch_peers.parameter_count(torch, config, tuple(nchw.shape[1:]))}


def checked(args) -> tuple[list[str], list[str], object]:
  """`(families, precisions, torch or None)` of the command line; `UserError` for a bad one."""
  names = args.models.split(',')
  for name in names:
    models.get(name)
  precisions = args.precision.split(',')
  bad = set(precisions) - set(nn.PRECISIONS)
  require(not bad, f'unknown --precision {",".join(sorted(bad))}; choose from {", ".join(nn.PRECISIONS)}')
  require(args.peak_size is None or args.peak_size >= 1, f'--peak-size must be >= 1, got {args.peak_size}')
  require(args.epochs >= 1 and args.batch_size >= 1 and args.examples >= args.batch_size,
          f'--epochs and --batch-size must be >= 1 and --examples >= --batch-size ({args.batch_size})')
  if not args.torch:
    return names, precisions, None
  try:
    import torch  # noqa: PLC0415 (optional: not a jaxae dependency)
  except ImportError:
    raise UserError('--torch needs PyTorch: pip install torch (its CPU wheels) in this environment') from None
  return names, precisions, torch


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--models', default=','.join(models.names()))
  p.add_argument('--precision', default='f32',
                 help="f32, bf16, or both as 'f32,bf16': each family then runs in both, one after the other")
  p.add_argument('--epochs', type=int, default=3, help='timed epochs after one warm-up (median reported)')
  p.add_argument('--batch-size', type=int, default=BATCH, help='examples per training step')
  p.add_argument('--arch', choices=('mlp', 'conv'), help="the families' network (default: each family's own)")
  p.add_argument('--torch', action='store_true',
                 help='conv families: also time the PyTorch peer (scripts/torch_peers.py), interleaved epoch by epoch')
  p.add_argument('--matmul-precision', choices=config_lib.CHOICES['matmul_precision'], default='default',
                 help="float32 matmuls (and the f32 peak): default is the backend's (TF32 on recent NVIDIA GPUs)")
  p.add_argument('--out', help='write the JSON report here too')
  p.add_argument('--result', metavar='FILE', help='write the table as a result file (jaxae.results) for the '
                 'documentation\'s results pages')
  p.add_argument('--peak-size', type=int, help='side of the square matmul that measures the peak (default: 2048 '
                 'on CPU, 8192 on an accelerator)')
  p.add_argument('--examples', type=int, default=59_904, help='synthetic images per epoch')
  p.add_argument('--data-mode', choices=('resident', 'streaming', 'records'), default='resident',
                 help='resident: one compiled scan per epoch; streaming: groups of batches from host memory; '
                      'records: the same from a records folder on disk (jaxae.records)')
  p.add_argument('--sweep', metavar='M1,M2,...', help='instead: members stacked in one program against as many '
                 'single runs in turn, for each M (the default and a small VAE), and with --sweep-job the wall-clock '
                 'of a whole sweep against a shell loop of train.py commands')
  p.add_argument('--sweep-job', type=int, default=0, metavar='M', help='with --sweep: also time M x 100 epochs of '
                 'vae on digits as one scripts/sweep.py against M scripts/train.py (0: not)')
  args = p.parse_args(argv)
  try:
    names, precisions, torch = checked(args)
    sizes = [int(m) for m in args.sweep.split(',')] if args.sweep else []
    require(all(m >= 1 for m in sizes), f'--sweep takes member counts >= 1, got {args.sweep}')
  except (UserError, ValueError) as e:
    errors.report('benchmark', str(e))
    return 2
  if sizes:
    return sweep_benchmark(sizes, args)
  images = jax.device_put(np.random.default_rng(0).integers(0, 256, (args.examples, 28, 28, 1), np.uint8))
  with matmul_precision(args.matmul_precision):
    peaks = {precision: roofline.matmul_peak(precision, args.peak_size) for precision in precisions}
    rows = [bench_family(name, precision, args.epochs, images, args.data_mode, args.batch_size, args.arch, torch)
            for name in names for precision in precisions]  # a family's precisions back to back
  for row in rows:
    row['roofline_fraction'] = row['gflop_per_s'] / peaks[row['precision']]
  memory, memory_kind = roofline.peak_memory_bytes()
  report = {'device': str(jax.devices()[0]), 'backend': jax.default_backend(), 'cpu': results.cpu_model(),
            'cpu_flags': results.cpu_features(),
            'jax': jax.__version__, 'matmul_precision': args.matmul_precision, 'batch_size': args.batch_size,
            'matmul_peak_gflop_per_s': peaks, 'peak_memory_bytes': memory,
            'peak_memory_kind': memory_kind, 'rows': rows}
  print(f"| model | arch | precision | data | compile (s) | epoch (s, median of {args.epochs}) | µs/step | "
        "bare scan (s) | overhead | PyTorch epoch (s) | examples/s | GFLOP/epoch | GFLOP/s | of its precision's peak |")
  print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    peer = f"{r['torch_epoch_s_median']:.3f}" if 'torch_epoch_s_median' in r else ''
    print(f"| {r['model']} | {r['arch']} | {r['precision']} | {r['data_mode']} | {r['compile_s']:.2f} | "
          f"{r['epoch_s_median']:.3f} | {r['us_per_step']:.0f} | {r['bare_scan_epoch_s_median']:.3f} | "
          f"{r['overhead']:+.0%} | {peer} | {r['examples_per_s']:,.0f} | {r['gflop_per_epoch']:.0f} | "
          f"{r['gflop_per_s']:.0f} | {r['roofline_fraction']:.0%} |")
  print(f'batch {args.batch_size}; matmul precision {args.matmul_precision}; matmul peaks: '
        + ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peaks.items()))
  print(f'peak memory: {memory / 2**20:.0f} MiB ({memory_kind}); device: {report["device"]}; CPU: {report["cpu"]} '
        f'({", ".join(report["cpu_flags"]) or "no AVX-512"})')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
  if args.result:
    results.write(args.result, as_result(rows, peaks, args))
  return 0


SWEPT = {'default VAE': {'model': 'vae'}, 'small VAE (784-64-8)': {'model': 'vae', 'hidden': (64,), 'latent_dim': 8}}


def sweep_benchmark(sizes: list[int], args) -> int:
  """`--sweep`: stacked against sequential epochs for each M and network, then (`--sweep-job`) the whole job."""
  from jaxae.sweeps import timing

  images = np.random.default_rng(0).integers(0, 256, (args.examples, 28, 28, 1), np.uint8)
  with matmul_precision(args.matmul_precision):
    peak = roofline.matmul_peak('f32', args.peak_size)
    rows = [{'network': name, **timing.throughput({**overrides, 'batch_size': args.batch_size}, m, images,
                                                  args.epochs)} for name, overrides in SWEPT.items() for m in sizes]
  print(f'| network | M | stacked epoch (s) | M single epochs (s) | throughput vs sequential |  (f32 peak {peak:.0f} '
        'GFLOP/s)')
  print('|---|---|---|---|---|')
  for r in rows:
    print(f"| {r['network']} | {r['members']} | {r['stacked_epoch_s']:.3f} | {r['sequential_epoch_s']:.3f} | "
          f"{r['throughput_ratio']:.2f}x |")
  job = None
  if args.sweep_job:
    with tempfile.TemporaryDirectory() as folder:
      job = timing.whole_job(['--model', 'vae', '--epochs', '100'], args.sweep_job, Path(folder))
    print(f"whole job, {job['members']} x ({job['command']}) on digits: sweep.py {job['sweep_s']:.1f} s, a loop of "
          f"train.py {job['loop_s']:.1f} s: {job['speedup']:.2f}x")
  report = {'device': str(jax.devices()[0]), 'cpu': results.cpu_model(), 'jax': jax.__version__,
            'matmul_peak_gflop_per_s': {'f32': peak}, 'examples': args.examples, 'rows': rows, 'whole_job': job}
  if args.out:
    Path(args.out).write_text(json.dumps(report, indent=2))
  if args.result:
    results.write(args.result, sweep_result(rows, job, peak, args))
  return 0


def sweep_result(rows: list[dict], job: dict | None, peak: float, args) -> dict:
  """The sweep table as a result file (jaxae.results)."""
  notes = '' if job is None else (
      f"The whole job, {job['members']} runs of `{job['command']}` on digits: one `scripts/sweep.py` took "
      f"{job['sweep_s']:.1f} s, a shell loop of {job['members']} `scripts/train.py` commands {job['loop_s']:.1f} s "
      f"({job['speedup']:.2f}x).")
  return results.make(
      title='Sweeps: members stacked in one program against single runs in turn', page='speed',
      command=shlex.join(['python', 'scripts/benchmark.py', *sys.argv[1:]]),
      summary=f'{args.examples:,} MNIST-shaped uint8 images an epoch, batch {args.batch_size}; for each M, one '
              'epoch of M members stacked (`jaxae.sweep`\'s program) against M epochs of the single run\'s compiled '
              f'chunk one after another, interleaved, the median of {args.epochs} after a warm-up.',
      columns=[{'key': 'network', 'label': 'network'}, {'key': 'members', 'label': 'M'},
               {'key': 'stacked_epoch_s', 'label': 'stacked epoch (s)', 'format': '.3f'},
               {'key': 'sequential_epoch_s', 'label': 'M single epochs (s)', 'format': '.3f'},
               {'key': 'throughput_ratio', 'label': 'throughput vs sequential', 'format': '.2f'}],
      rows=[{k: r[k] for k in ('network', 'members', 'stacked_epoch_s', 'sequential_epoch_s', 'throughput_ratio')}
            for r in rows], notes=notes, matmul_peaks={'f32': peak})


COLUMNS = [('model', 'model', None), ('arch', 'arch', None), ('precision', 'precision', None),
           ('data_mode', 'data', None), ('epoch_s_median', 'epoch (s)', '.3f'), ('us_per_step', 'µs/step', ',.0f'),
           ('bare_scan_epoch_s_median', 'bare scan (s)', '.3f'), ('overhead', 'over the bare scan', '+.0%'),
           ('torch_epoch_s_median', 'PyTorch epoch (s)', '.3f'), ('roofline_fraction', 'of the matmul peak', '.0%')]


def as_result(rows: list[dict], peaks: dict, args) -> dict:
  """The table as a result file (jaxae.results), with the machine's matmul peaks of this run."""
  keys = [(k, label, fmt) for k, label, fmt in COLUMNS if any(k in r for r in rows)]
  return results.make(
      title=f"Training epochs: {args.models.replace(',', ', ')}", page='speed',
      command=shlex.join(['python', 'scripts/benchmark.py', *sys.argv[1:]]),
      summary=f'{args.examples:,} MNIST-shaped uint8 images an epoch, batch {args.batch_size}, each family\'s '
              f'defaults{", " + args.arch + " networks" if args.arch else ""}; the median of {args.epochs} epochs '
              'after a warm-up, each beside a bare `lax.scan` of the same step (and the PyTorch peer with --torch) '
              'interleaved epoch by epoch; the fraction of the matmul peak measured in the same run.',
      columns=[{'key': k, 'label': label, **({'format': fmt} if fmt else {})} for k, label, fmt in keys],
      rows=[{k: r.get(k) for k, _, _ in keys} for r in rows], matmul_peaks=peaks,
      packages=('torch',) if args.torch else ())


if __name__ == '__main__':
  sys.exit(main())
