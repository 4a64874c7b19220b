"""One-shot accelerator check: is jaxae right and fast on this device? One command, results in files.

  python scripts/accelerator_check.py --out /tmp/check            # on a GPU/TPU machine: about 7 minutes
  python scripts/accelerator_check.py --out /tmp/check --quick    # the same stages, tiny, on any machine

Stages, each a subprocess with its own time limit (skipped once `--budget` seconds are spent):
  env       jax.print_environment_info, the devices, and whether 'f32' matmuls run in TF32 here (env.txt)
  vae       the MNIST-shaped VAE epoch (784-400-20, 59,904 images, resident), f32 and bf16, at batch 128 and
            1024, against the device's own matmul peak (bench_vae_b128.json, bench_vae_b1024.json)
  families  every family for an epoch of 468 steps at batch 128: µs per step, finite loss (bench_families.json)
  sweep     16 default VAEs stacked in one program against 16 single runs in turn, the same epochs
            (bench_sweep.json: the accelerator's throughput gain of `jaxae.sweep`)
  resume    SIGKILL mid-run and resume on the device, compared bitwise with an uninterrupted run (in the log)
  tests     the accelerator-relevant tests on this backend (pytest.xml)
Then summary.md (read it first) and log.txt (every stage's output). Exit status 0 when every stage that ran passed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

from jaxae import errors
from jaxae.errors import ArgumentParser

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'scripts'
TESTS = ['tests/test_prng.py', 'tests/test_models.py', 'tests/test_loop.py', 'tests/test_train.py',
         'tests/test_parallel.py::test_the_mesh_takes_the_devices_asked_for_in_process_order']
ENV = r'''
import jax, jax.numpy as jnp
jax.print_environment_info()
print('devices:', jax.devices(), '| backend:', jax.default_backend(), '| prng:', jax.config.jax_default_prng_impl)
x, y = jnp.full((1024, 1024), 1.0001, jnp.float32), jnp.ones((1024, 1024), jnp.float32)
print(f'f32 matmul at the default precision: {float((x @ y)[0, 0]):.4f} (float32: 1024.1024 less its rounding, '
      '1024.09-1024.12 by summation order; TF32 or bf16: 1024.0000)')
print(f"f32 matmul at highest: {float(jnp.matmul(x, y, precision='highest')[0, 0]):.4f}")
'''


def stages(quick: bool, out: Path) -> list[tuple[str, int, list[str]]]:
  """`(name, time limit in s, argv)` of each stage, in order."""
  py = sys.executable
  size = ['--examples', '1024', '--epochs', '1'] if quick else ['--examples', '59904', '--epochs', '3']
  vae = [(f'vae_b{b}', 60 if quick else 100, [py, str(SCRIPTS / 'benchmark.py'), '--models', 'vae', '--precision',
                                              'f32,bf16', '--batch-size', str(b), *size,
                                              '--out', str(out / f'bench_vae_b{b}.json')]) for b in (128, 1024)]
  families = [py, str(SCRIPTS / 'benchmark.py'), '--precision', 'f32', '--out', str(out / 'bench_families.json'),
              *(['--models', 'vae,gan', '--examples', '512', '--epochs', '1'] if quick else ['--epochs', '1'])]
  sweep = [py, str(SCRIPTS / 'benchmark.py'), '--out', str(out / 'bench_sweep.json'),
           *(['--sweep', '2', '--examples', '512', '--epochs', '1'] if quick else ['--sweep', '16', '--epochs', '2'])]
  soak = [py, str(SCRIPTS / 'soak.py'), '--model', 'vae', '--workdir', tempfile.mkdtemp(prefix='jaxae-soak-'),
          '--cycles', '1',
          '--epochs', '3' if quick else '6']
  tests = [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--junitxml', str(out / 'pytest.xml'),
           *(['-k', 'bf16_policy or orbax', '-n', '0'] if quick else []), *TESTS]  # quick: a few, one process
  return [('env', 60, [py, '-c', ENV]), *vae, ('families', 90 if quick else 150, families),
          ('sweep', 90 if quick else 150, sweep), ('resume', 120, soak), ('tests', 120 if quick else 200, tests)]


def run_stage(argv: list[str], limit: float, log) -> tuple[int, float, str]:
  """`(exit status, seconds, output)` of `argv` under `limit` seconds (status 124 when it ran out)."""
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                          env={**os.environ, 'PYTHONUNBUFFERED': '1', 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'})
    status, output = proc.returncode, proc.stdout + proc.stderr
  except subprocess.TimeoutExpired as e:
    status, output = 124, f'{e.stdout or ""}{e.stderr or ""}'
    output = output.decode() if isinstance(output, bytes) else output
  log.write(output)
  return status, time.perf_counter() - t0, output


def read_json(path: Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def findings(name: str, out: Path, output: str) -> list[str]:
  """The stage's numbers, as summary lines."""
  lines = []
  if name == 'env':
    lines = [line for line in output.splitlines() if line.startswith(('devices:', 'f32 matmul'))]
  elif name.startswith('vae') or name == 'families':
    report = read_json(out / ('bench_families.json' if name == 'families' else f'bench_{name}.json'))
    if report:
      peaks = ', '.join(f'{k} {v / 1e3:.1f} TFLOP/s' for k, v in report['matmul_peak_gflop_per_s'].items())
      lines.append(f"{report['device']}, batch {report['batch_size']}, matmul peaks {peaks}")
      lines += [f"{r['model']} {r['precision']}: epoch {r['epoch_s_median']:.4f} s, {r['us_per_step']:.0f} µs/step, "
                f"{r['roofline_fraction']:.1%} of peak, compile {r['compile_s']:.1f} s, final "
                f"{next(iter(r['final_train'].values())):.4g} (finite: {all_finite(r)})" for r in report['rows']]
  elif name == 'resume':
    report = read_json_line(output)
    if report:
      lines.append(f"kills {report['kills']}, params and batch statistics bitwise identical: "
                   f"{report['weights_bitwise_identical']}, "
                   f"metrics complete: {report['metrics_complete_no_duplicates']}")
  elif name == 'tests' and (out / 'pytest.xml').exists():
    suite = ElementTree.parse(out / 'pytest.xml').getroot()
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    lines.append(', '.join(f'{k} {suite.get(k)}' for k in ('tests', 'failures', 'errors', 'skipped')))
  return lines


def all_finite(row: dict) -> bool:
  values = [*row['final_train'].values(), row['bare_scan_final_train']]
  return all(v == v and abs(v) != float('inf') for v in values)


def read_json_line(output: str):
  lines = output.strip().splitlines()
  try:
    return json.loads(lines[-1]) if lines else None
  except ValueError:
    return None


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--out', required=True, help='folder for the result files (made if missing)')
  p.add_argument('--quick', action='store_true', help='tiny sizes: the same stages in a minute or two, on any machine')
  p.add_argument('--budget', type=float, default=520, help='seconds in all; stages that would start later are skipped')
  p.add_argument('--only', help='comma-separated stages to run (default: all)')
  args = p.parse_args(argv)
  out = Path(args.out)
  names = [name for name, _, _ in stages(args.quick, out)]
  only = args.only.split(',') if args.only else names
  problem = (f'--out {out} is a file; give a folder' if out.is_file() else
             f"unknown stage {sorted(set(only) - set(names))[0]!r} in --only; choose from {', '.join(names)}"
             if set(only) - set(names) else None)
  if problem:
    errors.report('accelerator_check', str(problem))
    return 2
  out.mkdir(parents=True, exist_ok=True)
  deadline, failed = time.monotonic() + args.budget, 0
  summary = [f'# jaxae accelerator check{" (quick)" if args.quick else ""}', '',
             '| stage | status | seconds | findings |', '|---|---|---|---|']
  with (out / 'log.txt').open('w') as log:
    for name, limit, stage_argv in stages(args.quick, out):
      if name not in only:
        continue
      left = deadline - time.monotonic()
      if left < 20:
        summary.append(f'| {name} | skipped (budget spent) | | |')
        continue
      log.write(f'\n===== {name}: {" ".join(stage_argv)}\n')
      status, seconds, output = run_stage(stage_argv, min(limit, left), log)
      failed += status != 0
      verdict = 'ok' if status == 0 else ('TIMED OUT' if status == 124 else f'FAILED ({status})')
      summary.append(f'| {name} | {verdict} | {seconds:.0f} | {"<br>".join(findings(name, out, output))} |')
      (out / 'summary.md').write_text('\n'.join(summary) + '\n')  # after every stage: a cut run still reports
      print(summary[-1], flush=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
