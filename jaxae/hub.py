"""jaxae models through the Hugging Face Hub's `ModelHubMixin` (optional: `pip install 'jaxae[hub]'`).

    model = JaxaeModel.from_run('runs/vae')          # a training workdir (or an exported folder)
    model.save_pretrained('exported/vae')              # the portable folder (`jaxae.portable`), model card included
    model.push_to_hub('me/jaxae-vae')                  # the same folder, uploaded (needs a token and network)
    model = JaxaeModel.from_pretrained('me/jaxae-vae')  # or a local folder: nothing is downloaded then
    images = model.sample(jax.random.key(0), 16)

The saved folder is exactly `jaxae.export`'s: `jaxae.load` reads it with or without
this module. Loading runs no code from the folder (safetensors and JSON only).
"""

import shutil
from pathlib import Path

from huggingface_hub import ModelHubMixin, snapshot_download

from jaxae import portable, runs, share


class JaxaeModel(ModelHubMixin, library_name='jaxae', tags=['jaxae', 'jax', 'flax', 'autoencoder']):
  """A loaded jaxae model (`self.loaded`, a `jaxae.Loaded`) that saves and loads as a Hub model folder.

  `sample`, `encode`, `decode` and `reconstruct` are the loaded model's.
  """

  def __init__(self, source: str):
    self.source = str(source)
    self.loaded = runs.load(self.source)

  @classmethod
  def from_run(cls, path: str | Path) -> 'JaxaeModel':
    """The model in a training workdir or an exported folder."""
    return cls(str(path))

  def _save_pretrained(self, save_directory: Path) -> None:
    if portable.is_exported(self.source):
      shutil.copytree(self.source, save_directory, dirs_exist_ok=True)
    else:
      share.export(self.source, save_directory)

  @classmethod
  def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                       **_) -> 'JaxaeModel':
    folder = model_id if Path(model_id).is_dir() else snapshot_download(
        repo_id=model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
        local_files_only=local_files_only, token=token)
    return cls(folder)

  def sample(self, key, n: int):
    return self.loaded.sample(key, n)

  def encode(self, x):
    return self.loaded.encode(x)

  def decode(self, z):
    return self.loaded.decode(z)

  def reconstruct(self, x):
    return self.loaded.reconstruct(x)
