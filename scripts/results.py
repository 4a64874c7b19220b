"""Train every model family with the same settings and print a markdown table of the results.

  python scripts/results.py --workdir runs/results-digits --epochs 100
  python scripts/results.py --workdir runs/results-mnist --epochs 20 \
      --set dataset=idx --set data_dir=../shared/data/mnist --set holdout=1000 --set holdout_order=tail

Each row: the family's headline eval metrics (nats per example for the losses; for the
VAE the negative ELBO; a GAN's two players' losses), the first (compiling) and median
later epoch time, and examples/s. Runs resume.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from jaxae import config as config_lib
from jaxae import models, train_and_evaluate
from jaxae.errors import ArgumentParser, UserError


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True)
  p.add_argument('--epochs', type=int, default=30)
  p.add_argument('--models', default=','.join(models.names()))
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
  args = p.parse_args(argv)
  rows = []
  try:
    for name in args.models.split(','):
      overrides = {**config_lib.parse_overrides(args.set, name), 'model': name, 'epochs': args.epochs}
      result = train_and_evaluate(overrides, Path(args.workdir) / name, progress=False)
      train = [r for r in result.records if r['split'] == 'train']
      final = [r for r in result.records if r['split'] == 'eval'][-1]
      times = [r['seconds'] for r in train]
      model = models.get(name)
      rows.append({'model': name, 'eval': {k: final[k] for k in model.HEADLINE}, 'eval_kl': final.get('kl'),
                   'first_epoch_s': times[0], 'median_epoch_s': statistics.median(times[1:] or times),
                   'examples_per_s': statistics.median(r['examples_per_sec'] for r in train[1:] or train),
                   'epochs': args.epochs})
  except UserError as e:
    print(f'results: error: {e}', file=sys.stderr)
    return 2
  print('| model | eval (headline metrics) | first epoch (s, incl. compile) | median epoch (s) | examples/s |')
  print('|---|---|---|---|---|')
  for r in rows:
    shown = ', '.join(f'{k} {v:.2f}' for k, v in r['eval'].items())
    print(f"| {r['model']} | {shown} | {r['first_epoch_s']:.2f} | {r['median_epoch_s']:.3f} | "
          f"{r['examples_per_s']:,.0f} |")
  (Path(args.workdir) / 'results.json').write_text(json.dumps(rows, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
