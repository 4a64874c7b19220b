"""Train a jaxae model: `python scripts/train.py --model vae --workdir runs/vae` (see --help)."""

import sys

from jaxae.cli import main

if __name__ == '__main__':
  sys.exit(main())
