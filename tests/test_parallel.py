"""Data parallelism: 4 forced CPU devices give the 1-device loss trajectory within float tolerance."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import tiny

from jaxae import train

CHILD = '''
import json, sys, jax
from jaxae import train
from jaxae.errors import UserError
overrides = json.loads(sys.argv[2])
try:
  result = train.train_and_evaluate(overrides, sys.argv[1], progress=False)
except UserError as e:
  print(json.dumps({'error': str(e)}))
  sys.exit(0)
leaf = jax.tree.leaves(result.state.params)[0]
print(json.dumps({'devices': jax.device_count(), 'param_devices': len(leaf.sharding.device_set),
                  'records': result.records}))
'''


def run_on_4_devices(workdir, overrides):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4', 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-c', CHILD, str(workdir), json.dumps(overrides)], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_match_one_device(tmp_path, name='vae'):  # the VAE also checks sharded z draws
  overrides = tiny(model=name, epochs=3, batch_size=64, eval_batch_size=60)
  four = run_on_4_devices(tmp_path / 'four', overrides)
  assert four['devices'] == 4 and four['param_devices'] == 4  # params replicated on all 4
  one = train.train_and_evaluate(overrides, tmp_path / 'one', progress=False).records
  assert [(r['epoch'], r['split'], r['step']) for r in four['records']] == [(r['epoch'], r['split'], r['step'])
                                                                             for r in one]
  np.testing.assert_allclose([r['loss'] for r in four['records']], [r['loss'] for r in one], rtol=2e-5)


def test_a_batch_size_that_does_not_split_over_the_devices_is_refused(tmp_path):
  out = run_on_4_devices(tmp_path, tiny(batch_size=30))
  assert 'batch_size 30 does not split over 4 devices' in out['error']
  assert not (tmp_path / 'config.json').exists()
