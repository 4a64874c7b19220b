"""Export a trained run as a portable model folder (`jaxae.portable`): `jaxae.export(workdir, out)`.

The folder holds the weights (safetensors), config.json, the model card (`jaxae.card`)
and the run's figures; `jaxae.load(out)` loads it anywhere, without the workdir.
"""

import json
import shutil
from pathlib import Path

from jaxae import card, portable, runs
from jaxae.errors import require
from jaxae.portable import FORMAT, FORMAT_VERSION, WEIGHTS

LOCAL = ('data_dir',)  # config keys naming this machine's paths: not exported


def export(workdir: str | Path, out: str | Path, step: int | None = None) -> Path:
  """Writes the run in `workdir` (at checkpoint `step`, default the latest) as a portable model folder `out`.

  Returns:
    `out` as a Path.

  Raises:
    UserError: no run in `workdir`, or `out` exists and is not an earlier export (nothing is overwritten).
  """
  out = Path(out)
  require(not out.exists() or (out / WEIGHTS).is_file() or (out.is_dir() and not any(out.iterdir())),
          f'{out} exists and is not an exported model: give a new or empty folder')
  loaded = runs.load(workdir, step)
  config = {k: (None if k in LOCAL else v) for k, v in loaded.config.items()}
  out.mkdir(parents=True, exist_ok=True)
  shutil.rmtree(out / 'figures', ignore_errors=True)  # an earlier export's
  tree = portable.weights(loaded.state)
  portable.save_weights(out / WEIGHTS, tree, {'format': FORMAT, 'model': config['model']})
  figures = _copy_figures(Path(workdir), out / 'figures')
  summary = card.summary(Path(workdir), loaded.step)
  header = {'format': FORMAT, 'format_version': FORMAT_VERSION, 'jaxae_version': portable.version(),
            'model': config['model'], 'input_shape': list(config['input_shape']), 'step': loaded.step,
            'metrics': summary, 'config': config,
            **{f'{k}_count': sum(a.size for a in portable.flatten(tree[k]).values())
               for k in ('params', 'batch_stats')}}
  (out / 'config.json').write_text(json.dumps(header, indent=2, sort_keys=True))
  (out / 'README.md').write_text(card.render(header, figures, listing(out)))
  return out


def _copy_figures(workdir: Path, dest: Path) -> list[str]:
  """The run's figures (`figures/*.png`, then `evaluation/figures/*.png`) copied into `dest`; their names."""
  names = []
  for folder in (workdir / 'figures', workdir / 'evaluation' / 'figures'):
    for png in sorted(folder.glob('*.png')) if folder.is_dir() else ():
      dest.mkdir(parents=True, exist_ok=True)
      shutil.copyfile(png, dest / png.name)
      names.append(png.name)
  return names


def listing(out: Path) -> dict[str, int]:
  """`{relative path: bytes}` of every file in `out`."""
  return {p.relative_to(out).as_posix(): p.stat().st_size for p in sorted(out.rglob('*')) if p.is_file()}
