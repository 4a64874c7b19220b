"""Export a trained run as a portable model folder: weights in safetensors, config.json, a model card, figures.

  python scripts/export.py runs/vae exported/vae
  python -c "import jax, jaxae; m = jaxae.load('exported/vae'); print(m.sample(jax.random.key(0), 4).shape)"

The folder needs no dataset, no checkpoint and no pickle to load (`jaxae.load`
on any device count). Bad input (no run, an output that is a file or holds
something else, a filesystem that refuses) prints one line and exits 2; the
workdir is only read (a run still training too: its newest committed checkpoint
is exported, and the last line says which). Exporting again into the folder
replaces what the export wrote and keeps any other file.
"""

import sys

from jaxae import errors, portable, share
from jaxae.errors import ArgumentParser, UserError


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('workdir', help='a trained run (a jaxae-train workdir)')
  p.add_argument('out', help='the folder to write (new, empty, or an earlier export to replace; other files in '
                 'it are kept)')
  p.add_argument('--step', type=int, help='the checkpoint to export (default: the latest)')
  args = p.parse_args(argv)
  try:
    out = share.export(args.workdir, args.out, args.step)
  except UserError as e:
    errors.report('export', str(e))
    return 2
  for f, size in share.listing(out).items():
    print(f'{size:>12,}  {out / f}')
  print(f"exported {args.workdir} at {portable.read_header(out)['progress']}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
