"""Portable export: every family's weights and outputs round-trip bitwise through a folder that needs no run
directory, no dataset and no orbax; the model card shows the run's numbers; bad input is one line, exit 2."""

import importlib.util
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import saved_run, tiny
from safetensors.numpy import save_file
from test_load import _write_idx

import jaxae
from jaxae import data as data_lib
from jaxae import models, portable, share, steps
from jaxae.errors import UserError
from jaxae.loop import checkpoint, train


def script(name: str):
  spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / 'scripts' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


evaluate, export = script('evaluate'), script('export')


def no_data_nor_orbax(monkeypatch):
  def refuse(*_, **__):
    raise AssertionError('loading an exported model read the dataset or an orbax checkpoint')
  monkeypatch.setattr(data_lib, 'prepare', refuse)
  monkeypatch.setattr(checkpoint, 'Checkpointer', refuse)


@pytest.mark.parametrize('name', models.names())
def test_every_family_round_trips_bitwise_with_its_run_directory_and_data_gone(tmp_path, monkeypatch, name):
  overrides = {'norm': 'batch', 'arch': 'conv'} if name == 'dcgan' else {}
  config, state = saved_run(tmp_path / 'run', name, **overrides)
  out = share.export(tmp_path / 'run', tmp_path / 'exported')
  shutil.rmtree(tmp_path / 'run')
  no_data_nor_orbax(monkeypatch)
  loaded = jaxae.load(out)
  assert loaded.step == 7 and loaded.config == config | {'data_dir': None} and loaded.model is models.get(name)
  for what in ('params', 'batch_stats'):
    want, got = getattr(state, what), getattr(loaded.state, what)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want),
                                                                           strict=True))
  if name == 'dcgan':
    assert len(jax.tree.leaves(loaded.state.batch_stats)) > 0
  key, x = jax.random.key(5), np.random.default_rng(0).random((3, 8, 8, 1), np.float32)
  fn = lambda f, *a: jax.jit(steps.bind(getattr(models.get(name), f), config), static_argnums=2 if f == 'sample'
                             else ())(state, *a)
  if models.can(name, 'sample'):
    assert np.array_equal(loaded.sample(key, 4), fn('sample', key, 4))
  if models.can(name, 'encode'):
    z = fn('encode', x)
    assert np.array_equal(loaded.encode(x), z) and np.array_equal(loaded.decode(z), fn('decode', z))
    assert np.array_equal(loaded.reconstruct(x), fn('decode', z))
  else:
    with pytest.raises(UserError, match=f'a {name} model has no encode'):
      loaded.encode(x)


def test_the_model_card_shows_the_runs_numbers_figures_and_how_to_load_it(tmp_path, capsys):
  result = train.train_and_evaluate(tiny(epochs=1, num_figure_images=8), tmp_path / 'vae', progress=False)
  assert evaluate.main([str(tmp_path / 'vae'), '--suites', 'reconstruction', '--no-progress']) == 0
  assert export.main([str(tmp_path / 'vae'), str(tmp_path / 'out')]) == 0
  printed = capsys.readouterr().out
  header = json.loads((tmp_path / 'out' / 'config.json').read_text())
  card = (tmp_path / 'out' / 'README.md').read_text()
  held_out = result.records[-1]
  assert header['metrics']['held_out']['loss'] == held_out['loss'] and header['input_shape'] == [8, 8, 1]
  assert f"| loss | {held_out['loss']:.4g} | nats per image |" in card
  mse = json.loads((tmp_path / 'vae' / 'evaluation' / 'results.json').read_text())['vae']['reconstruction']
  assert f"| mse_per_pixel (MSE/pixel) | {mse['metrics']['mse_per_pixel']:.4g} |" in card
  n_params = sum(a.size for a in jax.tree.leaves(result.state.params))
  assert header['params_count'] == n_params and f'{n_params:,} parameters' in card
  for figure in ('samples', 'reconstructions', 'loss', 'vae-reconstruction-reconstructions'):
    assert f'![{figure}](figures/{figure}.png)' in card and (tmp_path / 'out' / 'figures' / f'{figure}.png').is_file()
  assert 'model = jaxae.load(' in card and 'model.sample(jax.random.key(0), 16)' in card
  assert f"{(tmp_path / 'out' / 'model.safetensors').stat().st_size:,}" in printed


def test_bad_exports_and_bad_folders_are_one_line_and_change_nothing(tmp_path, capsys):
  saved_run(tmp_path / 'run', 'ae')
  (tmp_path / 'file').write_text('x')
  (tmp_path / 'other').mkdir()
  (tmp_path / 'other' / 'notes.txt').write_text('mine')
  for argv, said in (([str(tmp_path / 'none'), str(tmp_path / 'o')], 'holds no run'),
                     ([str(tmp_path / 'run'), str(tmp_path / 'file')], 'is not an exported model'),
                     ([str(tmp_path / 'run'), str(tmp_path / 'other')], 'is not an exported model')):
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
  assert (tmp_path / 'file').read_text() == 'x' and (tmp_path / 'other' / 'notes.txt').read_text() == 'mine'
  out = share.export(tmp_path / 'run', tmp_path / 'out')
  assert share.export(tmp_path / 'run', out) == out  # an earlier export is replaced
  flat = portable.load_weights(out / portable.WEIGHTS)
  name = sorted(flat)[0]
  save_file({**flat, name: np.ascontiguousarray(flat[name][..., :1])}, str(out / portable.WEIGHTS))
  with pytest.raises(UserError, match=f'{name} is float32.* the model needs float32'):
    jaxae.load(out)
  (out / portable.WEIGHTS).write_bytes(b'not safetensors')
  with pytest.raises(UserError, match='is not a readable safetensors file'):
    jaxae.load(out)
  header = json.loads((out / 'config.json').read_text())
  (out / 'config.json').write_text(json.dumps({**header, 'format_version': portable.FORMAT_VERSION + 1}))
  with pytest.raises(UserError, match='exported by a newer jaxae'):
    jaxae.load(out)


def test_an_exported_model_evaluates_on_its_data_found_elsewhere_and_only_on_them(tmp_path, capsys):
  digits = data_lib.load_digits()['train']
  pixels, labels = (digits['image'][:400, ..., 0] * 255).astype(np.uint8), digits['label'][:400]
  _write_idx(tmp_path / 'idx', pixels, labels)
  _write_idx(tmp_path / 'other', pixels[::-1], labels[::-1])
  train.train_and_evaluate(tiny(epochs=1, dataset='idx', data_dir=str(tmp_path / 'idx')), tmp_path / 'run',
                           progress=False)
  out = share.export(tmp_path / 'run', tmp_path / 'exported')
  shutil.rmtree(tmp_path / 'run')
  args = [str(out), '--suites', 'reconstruction', '--no-progress', '--out', str(tmp_path / 'eval')]
  for extra, said in (([], 'needs data_dir'), (['--data-dir', str(tmp_path / 'other')], 'not those it was trained')):
    assert evaluate.main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
  assert evaluate.main([*args, '--data-dir', str(tmp_path / 'idx')]) == 0
  assert json.loads((tmp_path / 'eval' / 'results.json').read_text())['exported']['reconstruction']
