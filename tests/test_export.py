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
from test_workdir import snapshot

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


SAME_STATE_AS = {'dae': 'ae', 'dropout_ae': 'ae', 'iwae': 'vae'}  # presets whose states are their base's, tree for tree


@pytest.mark.parametrize('name', [n for n in models.names() if n not in SAME_STATE_AS])
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
                     ([str(tmp_path / 'run'), str(tmp_path / 'file')], 'file is a file, not a folder'),
                     ([str(tmp_path / 'run'), str(tmp_path / 'file' / 'sub')], 'sub: ' + str(tmp_path / 'file') +
                      ' is a file, not a folder'),
                     ([str(tmp_path / 'run'), str(tmp_path / 'other')], 'holds files but no exported model')):
    assert export.main(argv) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
  assert (tmp_path / 'file').read_text() == 'x' and (tmp_path / 'other' / 'notes.txt').read_text() == 'mine'
  out = share.export(tmp_path / 'run', tmp_path / 'out')
  assert share.export(tmp_path / 'run', out) == out  # an earlier export is replaced
  flat = portable.load_weights(out / portable.WEIGHTS)
  name = sorted(flat)[0]
  save_file({**flat, name: np.ascontiguousarray(flat[name][..., :1])}, str(out / portable.WEIGHTS))
  recorded(out)  # as an export of another model would list it
  with pytest.raises(UserError, match=f'{name} is float32.* the model needs float32'):
    jaxae.load(out)
  (out / portable.WEIGHTS).write_bytes(b'not safetensors')
  recorded(out)
  with pytest.raises(UserError, match='is not a readable safetensors file'):
    jaxae.load(out)
  header = json.loads((out / 'config.json').read_text())
  (out / 'config.json').write_text(json.dumps({**header, 'format_version': portable.FORMAT_VERSION + 1}))
  with pytest.raises(UserError, match='exported by a newer jaxae'):
    jaxae.load(out)


def recorded(out: Path) -> None:
  """config.json's record of the weights file made to match the file as it now is."""
  header = json.loads((out / 'config.json').read_text())
  header['files'][portable.WEIGHTS] = portable.record(out / portable.WEIGHTS)
  (out / 'config.json').write_text(json.dumps(header))


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


def two_checkpoints(workdir: Path):
  """`saved_run` (checkpoint 7) and a checkpoint 8 with other weights, and figures of the run and its evaluation."""
  config, state = saved_run(workdir, 'vae')
  later = state.replace(params=jax.tree.map(lambda a: a + 1, state.params), step=np.int32(8))
  with checkpoint.Checkpointer(workdir / 'checkpoints', 2) as ckpt:
    ckpt.save(8, later, {})
  for folder, name in (('figures', 'samples.png'), ('evaluation/figures', 'vae-latent-codes.png')):
    (workdir / folder).mkdir(parents=True, exist_ok=True)
    (workdir / folder / name).write_bytes(b'\x89PNG ' + name.encode())
  return state, later


def test_exporting_again_keeps_the_users_files_and_removes_only_what_the_earlier_export_wrote(tmp_path):
  two_checkpoints(tmp_path / 'run')
  out = share.export(tmp_path / 'run', tmp_path / 'out', step=7)
  (out / 'figures' / 'mine.png').write_bytes(b'my figure')
  (out / 'notes.md').write_text('my notes')
  shutil.rmtree(tmp_path / 'run' / 'evaluation')  # the new export has no evaluation figure
  share.export(tmp_path / 'run', out)
  assert jaxae.load(out).step == 8
  assert (out / 'figures' / 'mine.png').read_bytes() == b'my figure' and (out / 'notes.md').read_text() == 'my notes'
  assert sorted(p.name for p in (out / 'figures').iterdir()) == ['mine.png', 'samples.png']
  assert set(share.listing(out)) == {'model.safetensors', 'README.md', 'figures/samples.png', 'config.json'}


@pytest.mark.parametrize('killed_in', ['staging', 'renames'])
def test_an_export_killed_midway_leaves_one_that_loads_or_refuses_in_one_line_and_the_command_runs_again(
    tmp_path, monkeypatch, killed_in):
  """Killed while writing its files (in out/.jaxae-export/): the earlier export is untouched. Killed in the
  moment it renames them into place (here: the files renamed, config.json not yet): the weights do not match
  config.json's record, and load says so."""
  _, later = two_checkpoints(tmp_path / 'run')
  out = share.export(tmp_path / 'run', tmp_path / 'out', step=7)
  earlier = snapshot(out)
  real = {'staging': shutil.copyfile, 'renames': share.os.replace}[killed_in]
  calls = []

  def killed(source, destination):
    calls.append(destination)
    if (killed_in == 'staging' and len(calls) == 2) or Path(destination) == out / 'config.json':
      raise KeyboardInterrupt  # what a kill leaves: nothing after this point runs
    return real(source, destination)

  monkeypatch.setattr(*((shutil, 'copyfile') if killed_in == 'staging' else (share.os, 'replace')), killed)
  with pytest.raises(KeyboardInterrupt):
    share.export(tmp_path / 'run', out)
  monkeypatch.undo()
  if killed_in == 'staging':
    assert {p: b for p, b in snapshot(out).items() if share.STAGING not in p.parts} == earlier
    assert jaxae.load(out).step == 7
  else:
    with pytest.raises(UserError, match='model.safetensors is not the file that was exported .* export the run again'):
      jaxae.load(out)
  share.export(tmp_path / 'run', out)  # the same command again
  loaded = jaxae.load(out)
  assert loaded.step == 8 and not (out / share.STAGING).exists()
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded.state.params), jax.tree.leaves(later.params),
                                                  strict=True))


def test_a_flipped_bit_or_a_nan_in_exported_weights_is_refused_in_one_line(tmp_path):
  saved_run(tmp_path / 'run', 'vae')
  out = share.export(tmp_path / 'run', tmp_path / 'out')
  raw = bytearray((out / portable.WEIGHTS).read_bytes())
  raw[-5] ^= 0x10  # one bit of the last tensor's data, after the header
  (out / portable.WEIGHTS).write_bytes(bytes(raw))
  with pytest.raises(UserError, match=r'model.safetensors is not the file that was exported \(its sha256 differs'):
    jaxae.load(out)
  share.export(tmp_path / 'run', out)
  flat = portable.load_weights(out / portable.WEIGHTS)
  name = sorted(flat)[-1]
  save_file({**flat, name: np.full_like(flat[name], np.nan)}, str(out / portable.WEIGHTS))
  recorded(out)  # the file as exported: its weights were NaN when it was written
  with pytest.raises(UserError, match=f'model.safetensors: {name} hold NaN or Inf, so the model computes non-finite '
                     'outputs; export a checkpoint from before they appeared, or load with allow_nonfinite=True'):
    jaxae.load(out)
  with pytest.warns(UserWarning, match=f'{name} hold NaN or Inf'):
    assert jaxae.load(out, allow_nonfinite=True).step == 7


def test_damaged_results_a_step_that_is_no_number_and_training_into_an_export_are_one_line(tmp_path, capsys):
  from test_cli import run_cli
  from test_workdir import SMALL

  saved_run(tmp_path / 'run', 'vae')
  (tmp_path / 'run' / 'evaluation').mkdir()
  (tmp_path / 'run' / 'evaluation' / 'results.json').write_text('{"vae": {"reconstruction": ')
  assert export.main([str(tmp_path / 'run'), str(tmp_path / 'out')]) == 2
  assert capsys.readouterr().err == (f"export: error: {tmp_path / 'run' / 'evaluation' / 'results.json'} is damaged "
                                     '(not the results scripts/evaluate.py writes): evaluate the run again, or move '
                                     'that file away to export without its numbers\n')
  assert not (tmp_path / 'out').exists()
  (tmp_path / 'run' / 'evaluation' / 'results.json').unlink()
  out = share.export(tmp_path / 'run', tmp_path / 'out')
  code, _, err = run_cli(capsys, '--workdir', str(out), '--epochs', '1', *SMALL)
  assert code == 2 and err == (f'jaxae-train: error: {out} holds a model exported with jaxae.export, not a training '
                               'run: train in another workdir (jaxae.load reads the export as it is)\n')
  header = json.loads((out / 'config.json').read_text())
  (out / 'config.json').write_text(json.dumps({**header, 'step': 'seven'}))
  with pytest.raises(UserError, match=r"config.json is damaged \(its step is 'seven', not a whole number of steps\)"):
    jaxae.load(out)
