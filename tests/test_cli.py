"""The command line: help, a real run, and bad input -> one line, exit 2, workdir intact."""

import subprocess
import sys
from pathlib import Path

import pytest

from jaxae import cli, models
from jaxae import config as config_lib

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
  code = cli.main([*argv, '--no-progress'])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_help_lists_models_and_datasets(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['--help'])
  assert e.value.code == 0
  text = capsys.readouterr().out
  for word in ('ae', 'tied_ae', 'dae', 'dropout_ae', 'vae', 'iwae', 'aae', 'gan', 'dcgan', 'wgan_gp', 'digits', 'idx',
               'mnist', 'cifar10', '--set', '--list-config'):
    assert word in text
  flat = ' '.join(text.split())
  for default in ('(default: 30)', '(default: 128)', 'vae 16', '(default: digits)', '(default: 0.001'):
    assert default in flat


@pytest.mark.parametrize('model', models.names())
def test_list_config_describes_every_key_with_its_default(model, capsys):
  assert cli.main(['--list-config', model]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  defaults = config_lib.defaults(model)
  assert [line.split()[0] for line in lines] == sorted(defaults)
  for key, default, meaning in config_lib.describe(model):
    assert meaning, f'{model}: config key {key!r} has no description (add it to its family KEYS)'
    assert str(default) in next(line for line in lines if line.split()[0] == key)


def test_list_config_of_an_unknown_model_and_no_workdir(capsys):
  assert cli.main(['--list-config', 'nope']) == 2
  assert capsys.readouterr().err.startswith("jaxae-train: error: unknown model 'nope'")
  with pytest.raises(SystemExit) as e:
    cli.main([])
  assert e.value.code == 2 and '--workdir' in capsys.readouterr().err


def test_a_run_with_overrides(tmp_path, capsys):
  code, out, _ = run_cli(capsys, '--model', 'tied_ae', '--workdir', str(tmp_path), '--epochs', '1',
                         '--set', 'hidden=32,16', '--set', 'likelihood=gaussian', '--latent-dim', '4')
  assert code == 0 and 'epoch 1 eval' in out
  config = (tmp_path / 'config.json').read_text()
  assert '"likelihood": "gaussian"' in config and '"latent_dim": 4' in config


def write_corrupt_idx(tmp_path):
  d = tmp_path / 'idx'
  d.mkdir()
  (d / 't10k-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x03\x00\x00\x27\x10\x00')
  return str(d)


BAD = {
    'unknown model': (['--model', 'nope'], "unknown model 'nope'"),
    'unknown dataset': (['--dataset', 'nope'], "unknown dataset 'nope'"),
    'tfds not prepared': (['--dataset', 'mnist', '--data-dir', '{tmp}'], 'not prepared'),
    'missing idx dir': (['--dataset', 'idx', '--data-dir', '{tmp}/none'], 'does not exist'),
    'corrupt idx': (['--dataset', 'idx', '--data-dir', 'CORRUPT'], 'truncated IDX header'),
    'latent 0': (['--latent-dim', '0'], 'latent_dim must be positive'),
    'batch -1': (['--batch-size', '-1'], 'batch_size must be positive'),
    'epochs 0': (['--epochs', '0'], 'epochs must be positive'),
    'bad float': (['--set', 'beta=abc'], "beta='abc' is not a valid float"),
    'unknown key': (['--set', 'nope=1'], "unknown config key 'nope'"),
    'bad choice': (['--set', 'arch=rnn'], "arch='rnn' is not one of"),
    'bad prob': (['--model', 'dropout_ae', '--set', 'dropout_rate=1.5'], 'dropout_rate must be in'),
    'conv size': (['--set', 'arch=conv', '--set', 'conv_features=8,8,8,8'], 'does not fit a conv net'),
    'bernoulli range': (['--dataset', 'idx', '--data-dir', 'FLOAT'], 'outside [0, 1]'),
    'rank out of range': (['--coordinator', 'localhost:1', '--num-processes', '2', '--process-id', '2'],
                          '--process-id 2 is not in 0..1'),
    'partial cluster': (['--num-processes', '2'], 'give --coordinator, --num-processes and --process-id together'),
    'prior vs code size': (['--model', 'aae', '--set', 'prior=mixture'], 'prior=mixture is a mixture of 2-D'),
    'n_critic 0': (['--model', 'wgan_gp', '--set', 'n_critic=0'], 'n_critic must be positive'),
    'infinite lr': (['--learning-rate', 'inf'], 'learning_rate=inf is not a finite number'),
    'dcgan on 8x8 with 4 layers': (['--model', 'dcgan', '--set', 'conv_features=8,8,8,8'], 'does not fit a conv net'),
    'hvae without a layer': (['--model', 'hvae', '--latent-dim', '0'], 'latent_dim must be positive'),
    'hvae widths': (['--model', 'hvae', '--set', 'upper_latents=50'],
                    'upper_hidden gives 2 width(s) for 1 upper layer(s) (upper_latents=50)'),
    'hvae six layers': (['--model', 'hvae', '--set', 'upper_latents=5,5,5,5,5', '--set', 'upper_hidden=8,8,8,8,8'],
                        'gives 6 stochastic layers'),
    'hvae free bits': (['--model', 'hvae', '--set', 'free_bits=-1'], 'free_bits must be >= 0'),
    'hvae vamp without pseudo-inputs': (['--model', 'hvae', '--set', 'prior=vamp', '--set', 'prior_components=0'],
                                        'prior_components must be positive'),
    'hvae iwae with warm-up': (['--model', 'hvae', '--set', 'iwae_samples=5'], 'set iwae_samples=1, or beta=1, '
                               'kl_warmup=0'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_gives_one_line_and_exit_2_and_keeps_the_workdir(tmp_path, capsys, case):
  import numpy as np
  from test_data import write_idx

  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'metrics.jsonl').write_text('{"epoch": 0}\n')
  argv, message = BAD[case]
  float_dir = tmp_path / 'float'
  float_dir.mkdir()
  write_idx(float_dir / 'train-images-idx3-ubyte', np.full((20, 4, 4), 7.0, np.float32))
  corrupt_dir = write_corrupt_idx(tmp_path)
  argv = [a.replace('{tmp}', str(tmp_path)).replace('CORRUPT', corrupt_dir).replace('FLOAT', str(float_dir))
          for a in argv]
  code, _, err = run_cli(capsys, '--workdir', str(workdir), *argv)
  assert code == 2
  assert err.count('\n') == 1 and err.startswith('jaxae-train: error: ') and message in err, err
  assert (workdir / 'metrics.jsonl').read_text() == '{"epoch": 0}\n'
  assert sorted(p.name for p in workdir.iterdir()) == ['metrics.jsonl']


def test_subprocess_exit_status_and_no_traceback(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'train.py'), '--workdir', str(tmp_path),
                         '--latent-dim', '-4'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert 'Traceback' not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith('jaxae-train: error: latent_dim must be positive')


def test_results_script_tabulates_one_and_two_player_families(tmp_path):
  proc = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'results.py'), '--workdir', str(tmp_path), '--epochs',
                         '1', '--models', 'ae,gan', '--set', 'hidden=32,16', '--set', 'latent_dim=4'],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert '| ae | loss ' in proc.stdout and '| gan | d_loss ' in proc.stdout and 'g_loss' in proc.stdout
