"""scripts/accelerator_check.py: its stages run and report in files (the full --quick run is in the closing notes)."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'accelerator_check.py'


def test_the_check_runs_its_stages_and_reports_them_in_files(tmp_path):
  proc = subprocess.run([sys.executable, str(SCRIPT), '--out', str(tmp_path), '--quick', '--only', 'env,tests'],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
  summary = (tmp_path / 'summary.md').read_text()
  highest = float(re.search(r'f32 matmul at highest: ([0-9.]+)', summary).group(1))
  assert '| env | ok |' in summary and abs(highest - 1024.1024) < 0.02  # float32 sums (not 1024.0000: bf16 / TF32)
  assert '| tests | ok |' in summary and 'failures 0, errors 0' in summary
  assert 'vae_b128' not in summary and (tmp_path / 'pytest.xml').exists() and (tmp_path / 'log.txt').exists()
  bad = subprocess.run([sys.executable, str(SCRIPT), '--out', str(tmp_path), '--only', 'env,gpu'],
                       capture_output=True, text=True, timeout=60)
  assert bad.returncode == 2 and bad.stderr.strip() == (
      "accelerator_check: error: unknown stage 'gpu' in --only; choose from env, vae_b128, vae_b1024, families, "
      'sweep, resume, tests')
