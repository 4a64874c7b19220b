"""Train a jaxae model: `python scripts/train.py --model vae --workdir runs/vae` (see --help)."""

from jaxae.cli import run

if __name__ == '__main__':
  run()
