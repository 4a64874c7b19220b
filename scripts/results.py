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
import shlex
import statistics
import sys
from pathlib import Path

from jaxae import config as config_lib
from jaxae import errors, models, results, train_and_evaluate
from jaxae.errors import ArgumentParser, UserError


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True)
  p.add_argument('--epochs', type=int, default=30)
  p.add_argument('--models', default=','.join(models.names()))
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
  p.add_argument('--result', metavar='FILE', help='also write the table as a result file (jaxae.results), e.g. '
                 'results/autoencoders_digits.json, for the documentation\'s results pages')
  p.add_argument('--data', default='the run\'s dataset', help='the data, in words, for --result')
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
    errors.report('results', str(e))
    return 2
  print('| model | eval (headline metrics) | first epoch (s, incl. compile) | median epoch (s) | examples/s |')
  print('|---|---|---|---|---|')
  for r in rows:
    shown = ', '.join(f'{k} {v:.2f}' for k, v in r['eval'].items())
    print(f"| {r['model']} | {shown} | {r['first_epoch_s']:.2f} | {r['median_epoch_s']:.3f} | "
          f"{r['examples_per_s']:,.0f} |")
  (Path(args.workdir) / 'results.json').write_text(json.dumps(rows, indent=2))
  if args.result:
    results.write(args.result, as_result(rows, args, shlex.join(['python', 'scripts/results.py', *sys.argv[1:]])))
  return 0


def as_result(rows: list[dict], args, command: str) -> dict:
  """The table as a result file: one row per family, its headline held-out metrics and its speed."""
  headline = sorted({k for r in rows for k in r['eval']})
  return results.make(
      title=f'Every family, {args.epochs} epochs: {args.data}', page='autoencoders', command=command,
      summary=f'{args.data}; each family with its defaults{" and " + ", ".join(args.set) if args.set else ""}, '
              f'{args.epochs} epochs, float32. Held-out metrics of the last epoch (losses in nats per image: for '
              'the VAE the negative ELBO with one z sample), the first epoch\'s time (it includes compiling) and '
              'the median of the others.',
      columns=[{'key': 'model', 'label': 'model'}] + [{'key': k, 'label': f'held-out {k}', 'format': '.2f'}
                                                       for k in headline] +
              [{'key': 'first_epoch_s', 'label': 'first epoch (s)', 'format': '.2f'},
               {'key': 'median_epoch_s', 'label': 'median epoch (s)', 'format': '.3f'},
               {'key': 'examples_per_s', 'label': 'examples/s', 'format': ',.0f'}],
      rows=[{'model': r['model'], **r['eval'], **{k: r[k] for k in ('first_epoch_s', 'median_epoch_s',
                                                                      'examples_per_s')}} for r in rows])


if __name__ == '__main__':
  sys.exit(main())
