"""The likelihood ladder: VAE, IWAE, the two-layer IWAE and Ladder VAEs, each with and without the VampPrior, trained
alike and evaluated with the likelihood suite; one row per model, written to a result file as each finishes.

  python scripts/likelihood_study.py --data-dir ../shared/data/mnist --workdir runs/likelihood --epochs 60 \
      --result results/hierarchical_likelihood_mnist.json

Every run: MNIST IDX, the first 9,000 images train and the last 1,000 are held out, dynamic binarization (a fresh
draw of each training image each time it is seen), the same epochs, batch size and learning rate. Each row: the
held-out -ELBO and IWAE-K NLL (nats, +- one standard error), the median training epoch (s), and the active
units of each layer at the end. Runs resume; `--rows` picks some (`--list` names them all), and the result file
keeps the rows measured before.
"""

import argparse
import shlex
import statistics
import sys
from pathlib import Path

import jax

from jaxae import errors, load, results, train_and_evaluate
from jaxae.errors import ArgumentParser, UserError
from jaxae.evaluation import likelihood

VAMP = {'prior': 'vamp', 'prior_components': 500}  # Tomczak & Welling's K for MNIST
ONE = {'model': 'hvae', 'hidden': (200, 200), 'latent_dim': 50, 'upper_latents': (), 'upper_hidden': (),
       'kl_warmup': 0.0}  # the IWAE paper's 784-(200,200)-50
TWO = {'model': 'hvae', 'hidden': (200, 200), 'latent_dim': 100, 'upper_latents': (50,), 'upper_hidden': (100,),
       'kl_warmup': 0.0}  # its 784-(200,200)-100-(100,100)-50
LADDER = {'inference': 'top_down', 'kl_warmup': 10.0}
DEEP = {'hidden': (512, 512), 'latent_dim': 64, 'upper_hidden': (256, 128, 64, 32)}  # Sønderby et al.'s widths
THREE = {'model': 'hvae', **DEEP, 'upper_latents': (32, 16), 'upper_hidden': (256, 128)}
FIVE = {'model': 'hvae', **DEEP, 'upper_latents': (32, 16, 8, 4)}
ROWS = {  # in the order they are measured: the cheap and the telling first, IWAE k = 50 (50 x the decoder) last
    'VAE': ONE,
    'IWAE k=5': {**ONE, 'iwae_samples': 5},
    'VAE + VampPrior': {**ONE, **VAMP},
    'IWAE k=5 + VampPrior': {**ONE, 'iwae_samples': 5, **VAMP},
    '2-layer IWAE k=5 (bottom-up)': {**TWO, 'inference': 'bottom_up', 'iwae_samples': 5},
    '2-layer Ladder VAE': {**TWO, **LADDER},
    '2-layer Ladder VAE, no warm-up': {**TWO, 'inference': 'top_down'},
    '2-layer Ladder VAE + VampPrior': {**TWO, **LADDER, **VAMP},
    '3-layer Ladder VAE': {**THREE, **LADDER},
    '5-layer Ladder VAE': {**FIVE, **LADDER},
    'vae (jaxae default, 512-256-16)': {'model': 'vae'},
    '2-layer IWAE k=5 (bottom-up) + VampPrior': {**TWO, 'inference': 'bottom_up', 'iwae_samples': 5, **VAMP},
    '2-layer Ladder VAE + free bits 0.5': {**TWO, **LADDER, 'free_bits': 0.5},
    '3-layer Ladder VAE + VampPrior': {**THREE, **LADDER, **VAMP},
    '5-layer Ladder VAE + VampPrior': {**FIVE, **LADDER, **VAMP},
    'IWAE k=50': {**ONE, 'iwae_samples': 50},
    'IWAE k=50 + VampPrior': {**ONE, 'iwae_samples': 50, **VAMP},
    'VAE 784-(512,512)-64 (the deep ladders\' z1 network alone)': {'model': 'hvae', 'hidden': (512, 512),
                                                                  'latent_dim': 64, 'upper_latents': (),
                                                                  'upper_hidden': (), 'kl_warmup': 10.0},
}
COLUMNS = [{'key': 'model', 'label': 'model'}, {'key': 'nelbo', 'label': 'held-out −ELBO'},
           {'key': 'nll', 'label': 'IWAE NLL'}, {'key': 'epoch_s', 'label': 'epoch (s)', 'format': '.2f'},
           {'key': 'active_units', 'label': 'active units per layer'}]


def folder(name: str) -> str:
  return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-')


def measure(name: str, overrides: dict, args) -> dict:
  """Trains (or resumes) one row's run and evaluates it: the row of the table."""
  config = {**overrides, 'dataset': 'idx', 'data_dir': args.data_dir, 'holdout': 1000, 'holdout_order': 'tail',
            'binarize': 'dynamic', 'epochs': args.epochs, 'seed': args.seed}
  workdir = Path(args.workdir) / folder(name)
  result = train_and_evaluate(config, workdir, progress=False)
  train = [r for r in result.records if r['split'] == 'train']
  final = [r for r in result.records if r['split'] == 'eval'][-1]
  found, _ = likelihood.run(load(workdir), jax.random.key(args.seed), iwae_samples=args.iwae_samples)
  units = [final[k] for k in sorted(k for k in final if k.startswith('active_units'))]
  return {'model': name, 'nelbo': f"{found['nelbo']:.2f} ± {found['nelbo_sem']:.2f}",
          'nll': f"{found['iwae_nll']:.2f} ± {found['iwae_nll_sem']:.2f}",
          'epoch_s': statistics.median(r['seconds'] for r in train[1:] or train),
          'active_units': ' / '.join(str(int(u)) for u in units) or '—'}


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--data-dir', required=True, help='folder of the MNIST IDX files')
  p.add_argument('--workdir', required=True, help='folder of the runs (one per row)')
  p.add_argument('--epochs', type=int, default=60)
  p.add_argument('--iwae-samples', type=int, default=5000)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--rows', help='comma-separated row numbers (0-based) of --list (default: all)')
  p.add_argument('--list', action='store_true', help='print the rows and exit')
  p.add_argument('--result', metavar='FILE', help='write the table as a result file (jaxae.results)')
  args = p.parse_args(argv)
  names = list(ROWS)
  if args.list:
    print('\n'.join(f'{i}: {n}  {ROWS[n]}' for i, n in enumerate(names)))
    return 0
  try:
    picked = [names[int(i)] for i in args.rows.split(',')] if args.rows else names
    found = earlier(args.result)  # rows measured before, kept unless measured again
    for name in picked:
      found[name] = measure(name, ROWS[name], args)
      print(' | '.join(str(found[name][c['key']]) for c in COLUMNS), flush=True)
      if args.result:
        results.write(args.result, as_result([found[n] for n in names if n in found], args))
  except (UserError, IndexError, ValueError) as e:
    errors.report('likelihood_study', str(e) if isinstance(e, UserError) else f'--rows {args.rows}: {e}; see --list')
    return 2
  return 0


def earlier(path: str | None) -> dict:
  """`{model: row}` of the result file at `path` if there is one (a study measured in several invocations)."""
  if path is None or not Path(path).exists():
    return {}
  return {r['model']: r for r in results.read(path)['rows'] if r['model'] in ROWS}


def as_result(rows: list[dict], args) -> dict:
  return results.make(
      title='Hierarchical VAEs and learned priors: held-out likelihood (MNIST)', page='likelihood',
      summary=f'MNIST test-set IDX files (`../shared/data/mnist`): the first 9,000 images train, the last 1,000 are '
              f'held out; dynamic binarization (a fresh Bernoulli draw of each training image each time it is seen, '
              f'one fixed draw of the held-out images); {args.epochs} epochs, batch 128, Adam 1e-3, seed '
              f'{args.seed} for every row. The `likelihood` suite: held-out −ELBO and the IWAE bound with K = '
              f'{args.iwae_samples:,} as the NLL estimate, nats per image ± one standard error over the 1,000 '
              'images; the median training epoch; the active units of each layer, z_1 first (Cov_x E_q[z_u] > 0.01).',
      command=shlex.join(['python', 'scripts/likelihood_study.py', '--data-dir', args.data_dir, '--workdir',
                          args.workdir, '--epochs', str(args.epochs), '--iwae-samples', str(args.iwae_samples),
                          '--seed', str(args.seed), '--result', args.result]),
      columns=COLUMNS, rows=rows)


if __name__ == '__main__':
  sys.exit(main())
