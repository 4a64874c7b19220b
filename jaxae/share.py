"""Export a trained run as a portable model folder (`jaxae.portable`): `jaxae.export(workdir, out)`.

The folder holds the weights (safetensors), config.json, the model card (`jaxae.card`)
and the run's figures; `jaxae.load(out)` loads it anywhere, without the workdir.

What an export writes, and nothing else, it may replace later: config.json lists
every file it wrote with its size and sha256 (`files`), and `jaxae.load` checks
the weights against it. Files the user put in the folder are never touched. The
new files are written whole into `out/.jaxae-export/` first and then renamed into
place, config.json last, so a failure or a kill while writing leaves the earlier
export as it was (and the same command runs again).
"""

import json
import os
import shutil
from pathlib import Path

from jaxae import card, errors, portable, runs
from jaxae.errors import require
from jaxae.portable import FORMAT, FORMAT_VERSION, WEIGHTS

LOCAL = ('data_dir',)  # config keys naming this machine's paths: not exported
STAGING = '.jaxae-export'  # out/.jaxae-export/: the new export's files until they replace the earlier ones


def export(workdir: str | Path, out: str | Path, step: int | None = None) -> Path:
  """Writes the run in `workdir` (at checkpoint `step`, default the latest) as a portable model folder `out`.

  `out` may be new, empty, or an earlier export (its files are replaced; files the export did not write are
  kept). Everything is read and checked before anything is written.

  Returns:
    `out` as a Path.

  Raises:
    UserError: no run in `workdir`; `out` (or a folder above it) is a file, or `out` holds files but no export;
      a file of the run cannot be read; or the filesystem refuses the writes (the earlier export is then kept).
  """
  out = Path(out)
  earlier = _earlier_files(out)
  loaded = runs.load(workdir, step)
  config = {k: (None if k in LOCAL else v) for k, v in loaded.config.items()}
  header = {'format': FORMAT, 'format_version': FORMAT_VERSION, 'jaxae_version': portable.version(),
            'model': config['model'], 'input_shape': list(loaded.config['input_shape']), 'step': loaded.step,
            'progress': loaded.progress, 'metrics': card.summary(Path(workdir), loaded.step), 'config': config}
  tree = portable.weights(loaded.state)
  header.update({f'{k}_count': sum(a.size for a in portable.flatten(tree[k]).values())
                 for k in ('params', 'batch_stats')})
  created = not out.exists()
  try:
    _write(out, header, tree, _figures(Path(workdir)), earlier)
  except OSError as e:
    shutil.rmtree(out / STAGING, ignore_errors=True)
    if created:
      shutil.rmtree(out, ignore_errors=True)
    kept = 'nothing was left there' if created else 'the export there is kept as it was'
    raise errors.filesystem_error(e, out, kept) from None
  return out


def _earlier_files(out: Path) -> set[str]:
  """The files an earlier export in `out` wrote (none for a new or empty folder, or an export that did not list
  them); `UserError` if `out` or a folder above it is a file, or `out` holds files but no export."""
  for p in (out, *out.parents):
    if p.exists():
      where = '' if p == out else f': {p}'
      require(p.is_dir(), f'{out}{where} is a file, not a folder; give a folder path for the export')
      break
  if not out.is_dir() or not any(p.name != STAGING for p in out.iterdir()):
    return set()
  require(portable.is_exported(out), f'{out} holds files but no exported model: give a new or empty folder, or '
          'an earlier export to replace')
  return set(portable.read_header(out).get('files', {}))


def _figures(workdir: Path) -> dict[str, Path]:
  """`{name: path}` of the run's figures (`figures/*.png`, then `evaluation/figures/*.png`)."""
  return {png.name: png for folder in (workdir / 'figures', workdir / 'evaluation' / 'figures')
          for png in (sorted(folder.glob('*.png')) if folder.is_dir() else ())}


def _write(out: Path, header: dict, tree: dict, figures: dict[str, Path], earlier: set[str]) -> None:
  """Writes the export into `out/.jaxae-export/`, then renames it into place, config.json last; removes what the
  earlier export wrote and this one does not."""
  staging = out / STAGING
  shutil.rmtree(staging, ignore_errors=True)  # an export killed before it finished
  (staging / 'figures').mkdir(parents=True)
  portable.save_weights(staging / WEIGHTS, tree, {'format': FORMAT, 'model': header['model']})
  for name, source in figures.items():
    shutil.copyfile(source, staging / 'figures' / name)
  files = {rel: portable.record(staging / rel) for rel in [WEIGHTS, *(f'figures/{name}' for name in figures)]}
  (staging / 'README.md').write_text(card.render(header, list(figures), {k: v['bytes'] for k, v in files.items()}))
  header = {**header, 'files': {**files, 'README.md': portable.record(staging / 'README.md')}}
  (staging / 'config.json').write_text(json.dumps(header, indent=2, sort_keys=True))
  for rel in [*header['files'], 'config.json']:
    (out / rel).parent.mkdir(exist_ok=True)
    os.replace(staging / rel, out / rel)
  for rel in sorted(earlier - set(header['files'])):
    (out / rel).unlink(missing_ok=True)
  shutil.rmtree(staging)
  if (out / 'figures').is_dir() and not any((out / 'figures').iterdir()):
    (out / 'figures').rmdir()


def listing(out: Path) -> dict[str, int]:
  """`{relative path: bytes}` of the files the export in `out` wrote (config.json included)."""
  files = portable.read_header(out).get('files', {})
  return {**{rel: f['bytes'] for rel, f in files.items()}, 'config.json': (out / 'config.json').stat().st_size}
