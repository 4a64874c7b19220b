"""The code, scripts, tests and notebooks pass the linter (ruff, configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes_on_code_and_notebooks():
  proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', 'jaxae', 'scripts', 'tests', 'notebooks'], cwd=ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout + proc.stderr
