"""The benchmark script runs end to end on a small synthetic epoch (speed itself is not asserted)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from jaxae import results

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'benchmark.py'


def test_benchmark_small_run_writes_a_report(tmp_path):
  out = tmp_path / 'bench.json'
  args = ['--models', 'vae', '--examples', '512', '--epochs', '1', '--precision', 'f32,bf16', '--out', str(out),
          '--batch-size', '64', '--matmul-precision', 'highest', '--peak-size', '256', '--result',
          str(tmp_path / 'result.json')]
  proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads(out.read_text())
  assert [(r['model'], r['precision']) for r in report['rows']] == [('vae', 'f32'), ('vae', 'bf16')]
  assert report['matmul_precision'] == 'highest' and report['batch_size'] == 64
  for row in report['rows']:
    assert row['batch_size'] == 64 and row['us_per_step'] == row['epoch_s_median'] / 8 * 1e6
    assert row['epoch_s_median'] > 0 and row['gflop_per_epoch'] > 0 and row['examples_per_s'] > 0
    peak = report['matmul_peak_gflop_per_s'][row['precision']]
    assert row['roofline_fraction'] == row['gflop_per_s'] / peak
    assert row['bare_scan_epoch_s_median'] > 0 and row['overhead'] == row['epoch_s_median'] / row[
        'bare_scan_epoch_s_median'] - 1
    # the reference trains the same model on the same batches and keys (512 = 8 whole batches)
    headline = row['final_train'][next(iter(row['final_train']))]
    assert abs(row['bare_scan_final_train'] - headline) <= 1e-3 * max(1.0, abs(headline)), row
  assert '| vae | mlp | bf16 |' in proc.stdout and report['cpu']
  result = results.read(tmp_path / 'result.json')  # the same numbers, for the results pages
  assert [r['epoch_s_median'] for r in result['rows']] == [r['epoch_s_median'] for r in report['rows']]
  assert result['machine']['matmul_peak_gflop_per_s'] == report['matmul_peak_gflop_per_s'] and result['page'] == 'speed'
  assert result['command'].startswith('python scripts/benchmark.py --models vae --examples 512')
  bad = subprocess.run([sys.executable, str(SCRIPT), '--precision', 'f16'], capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and bad.stderr.strip() == (
      'benchmark: error: unknown --precision f16; choose from f32, bf16'), bad.stderr


def test_streaming_and_resident_epochs_train_the_same(tmp_path):
  losses = {}
  for mode in ('resident', 'streaming'):
    out = tmp_path / f'{mode}.json'
    args = ['--models', 'ae', '--examples', '300', '--epochs', '1', '--data-mode', mode, '--out', str(out),
            '--peak-size', '256']
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())['rows']
    assert row['data_mode'] == mode
    losses[mode] = row['final_train']['loss']
  assert abs(losses['resident'] - losses['streaming']) < 1e-4 * losses['resident']


def test_the_sweep_benchmark_times_stacked_members_against_single_runs(tmp_path):
  out = tmp_path / 'sweep.json'
  args = ['--sweep', '2', '--examples', '256', '--epochs', '1', '--batch-size', '64', '--peak-size', '256', '--out',
          str(out), '--result', str(tmp_path / 'result.json')]
  proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = json.loads(out.read_text())['rows']
  assert [(r['network'], r['members']) for r in rows] == [('default VAE', 2), ('small VAE (784-64-8)', 2)]
  for r in rows:
    assert r['throughput_ratio'] == r['sequential_epoch_s'] / r['stacked_epoch_s'] and r['steps_per_epoch'] == 4
  assert [r['throughput_ratio'] for r in results.read(tmp_path / 'result.json')['rows']] == [
      r['throughput_ratio'] for r in rows]
  bad = subprocess.run([sys.executable, str(SCRIPT), '--sweep', '0'], capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip() == 'benchmark: error: --sweep takes member counts >= 1, got 0'


def test_benchmark_rejects_an_unknown_model():
  proc = subprocess.run([sys.executable, str(SCRIPT), '--models', 'nope'], capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr


def test_the_pytorch_comparison_runs_or_says_torch_is_missing(tmp_path):
  """torch is not a jaxae dependency: without it the script refuses in one line with exit 2."""
  out = tmp_path / 'torch.json'
  proc = subprocess.run([sys.executable, str(SCRIPT.parent / 'compare_pytorch.py'), '--examples', '256', '--epochs',
                         '1', '--out', str(out)], capture_output=True, text=True, timeout=300)
  if importlib.util.find_spec('torch') is None:
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'compare_pytorch: error: torch is not installed; run this script in an environment with torch')
    assert not out.exists()
  else:
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report['epoch_s_median'] > 0 and 0 < report['final_train_loss'] < 784 * 2


def test_the_matmul_peak_times_several_calls_per_sync_as_on_an_accelerator():
  """The accelerator defaults (a larger matmul, 10 calls per sync) are parameters: both paths run here."""
  from jaxae import roofline

  one, several = roofline.matmul_peak(size=256, repeats=3), roofline.matmul_peak(size=256, repeats=3, calls=4)
  bf16 = roofline.matmul_peak('bf16', size=256, repeats=2, calls=2)
  assert min(one, several, bf16) > 0.1  # GFLOP/s: positive and finite, whatever the machine
  assert max(one, several, bf16) < 1e7


def test_the_conv_families_run_beside_their_pytorch_peers_or_torch_is_said_missing(tmp_path):
  """`--torch`: the same networks (parameter counts equal) timed in the same run; without torch, one line."""
  out = tmp_path / 'conv.json'
  proc = subprocess.run([sys.executable, str(SCRIPT), '--models', 'vae,dcgan', '--arch', 'conv', '--torch',
                         '--examples', '256', '--epochs', '1', '--out', str(out), '--peak-size', '256'],
                        capture_output=True, text=True, timeout=300)
  if importlib.util.find_spec('torch') is None:
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'benchmark: error: --torch needs PyTorch: pip install torch (its CPU wheels) in this environment')
    return
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = json.loads(out.read_text())['rows']
  assert [(r['model'], r['arch']) for r in rows] == [('vae', 'conv'), ('dcgan', 'conv')]
  for row in rows:
    assert row['torch_parameters'] == row['parameters'] and row['torch_epoch_s_median'] > 0 and row['compile_s'] > 0
    assert abs(row['torch_final_train']) < 1e4
