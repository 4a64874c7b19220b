"""jaxae.hub: the Hugging Face Hub mixin saves the portable folder and loads it back, offline."""

import jax
import numpy as np
from conftest import saved_run

import jaxae
from jaxae import portable
from jaxae.hub import JaxaeModel


def test_save_pretrained_writes_the_portable_folder_and_from_pretrained_loads_it_offline(tmp_path, monkeypatch):
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # a local folder: nothing may be downloaded
  saved_run(tmp_path / 'run', 'aae')
  model = JaxaeModel.from_run(tmp_path / 'run')
  model.save_pretrained(tmp_path / 'hub')
  assert portable.is_exported(tmp_path / 'hub')
  assert (tmp_path / 'hub' / 'README.md').read_text().startswith('---\nlibrary_name: jaxae')  # jaxae's card
  again = JaxaeModel.from_pretrained(str(tmp_path / 'hub'))
  key, x = jax.random.key(2), np.random.default_rng(0).random((2, 8, 8, 1), np.float32)
  assert np.array_equal(again.sample(key, 3), model.sample(key, 3))
  assert np.array_equal(again.reconstruct(x), model.reconstruct(x))
  assert np.array_equal(jaxae.load(tmp_path / 'hub').encode(x), model.encode(x))
  again.save_pretrained(tmp_path / 'copy')  # from an exported folder: the same files
  for f in ('model.safetensors', 'config.json', 'README.md'):
    assert (tmp_path / 'copy' / f).read_bytes() == (tmp_path / 'hub' / f).read_bytes()
