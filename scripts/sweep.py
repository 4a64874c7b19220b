"""Train a sweep: `python scripts/sweep.py --model vae --grid beta=0.5,1,2 --seeds 3 --workdir runs/beta`
(see --help)."""

from jaxae.sweeps.cli import run

if __name__ == '__main__':
  run()
