"""Evaluate trained runs: one or more workdirs, a choice of suites; writes results.json, report.md,
comparison.md (one row per run, each suite's headline numbers with units) and figures.

  python scripts/evaluate.py runs/gan runs/vae --suites samples --out runs/eval
  python scripts/evaluate.py runs/ae runs/vae --suites compression,probe,latent --out runs/eval
  python scripts/evaluate.py runs/vae --suites likelihood --iwae-samples 5000

Suites: every module of `jaxae.evaluation` with a `run` (listed by --help).
Bad input (no run, a suite that does not fit the model, bad numbers) prints one
line and exits 2; nothing in the workdirs is changed. A run may be evaluated while
it trains: its newest committed checkpoint is read, and a line on stderr says which.
"""

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from jaxae import errors, evaluation, results, sweeps
from jaxae.errors import ArgumentParser, UserError, require
from jaxae.loop.compile import matmul_precision
from jaxae.loop.keys import root_key
from jaxae.runs import load


def report(found: dict, about: dict) -> str:
  """Markdown: the comparison table, then one table per suite with all its numbers, a row per run."""
  lines = ['# jaxae evaluation', '', evaluation.comparison(found, about), '']
  for suite in sorted({s for r in found.values() for s in r}):
    rows = {run: r[suite]['metrics'] for run, r in found.items() if suite in r}
    keys = sorted({k for m in rows.values() for k in m if not isinstance(m[k], (list, dict))})  # the rest: results.json
    lines += [f'## {suite}', '', '| run | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|']
    for run, m in rows.items():
      cells = [evaluation.number(m.get(k)) for k in keys]
      lines.append(f'| {run} | ' + ' | '.join(cells) + ' |')
    for run, m in rows.items():
      if 'class_histogram' in m:
        lines.append(f"\n{run} class histogram: {', '.join(f'{v:.3f}' for v in m['class_histogram'])}")
    lines += ['']
  return '\n'.join(lines)


def main(argv=None) -> int:
  suites = '\n'.join(f'  {n:<15} {evaluation.get(n).__doc__.strip().splitlines()[0]}' for n in evaluation.names())
  p = ArgumentParser(description=__doc__, epilog=f'suites:\n{suites}',
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('workdirs', nargs='+', help='trained runs (jaxae-train workdirs)')
  p.add_argument('--suites', default='samples', help='comma-separated suites (default: samples)')
  p.add_argument('--out', help='output folder (default: WORKDIR/evaluation for one run, else required)')
  p.add_argument('--num-samples', type=int, default=10_000, help='samples per generative run (default: 10000)')
  p.add_argument('--iwae-samples', type=int, default=5000,
                 help='importance samples K of the likelihood suite (default: 5000)')
  p.add_argument('--seed', type=int, default=0, help='seed of the evaluation draws (default: 0)')
  p.add_argument('--data-dir', help="the data's folder on this machine (IDX, records or TFDS), for an exported "
                 'model (exports leave local paths out) or a run whose data moved; checked against its fingerprint')
  p.add_argument('--no-progress', action='store_true')
  p.add_argument('--result', metavar='FILE', help='also write the comparison table as a result file '
                 '(jaxae.results), for the documentation\'s results pages')
  p.add_argument('--title', default='Evaluation', help='the result file\'s title (with --result)')
  p.add_argument('--page', default='quality', help='the results page it goes on (with --result): '
                 f"{', '.join(results.PAGES)}")
  args = p.parse_args(argv)
  try:
    require(args.num_samples > 0, f'--num-samples must be positive, got {args.num_samples}')
    require(args.iwae_samples > 0, f'--iwae-samples must be positive, got {args.iwae_samples}')
    require(args.out is not None or len(args.workdirs) == 1, 'give --out when evaluating several workdirs')
    workdirs = sweeps.report.member_folders(args.workdirs)  # a sweep's folder stands for its members
    require(args.result is None or args.page in results.PAGES, f"--page {args.page} is not one of "
            f"{', '.join(results.PAGES)}")
    suites = [evaluation.get(name) for name in args.suites.split(',')]
    runs = {Path(w).name or w: load(w) for w in workdirs}
    for name, loaded in runs.items():
      if not loaded.finished:  # a run still training (or stopped): say which checkpoint its numbers are of
        print(f'evaluate: {name}: {loaded.progress}', file=sys.stderr)
    if args.data_dir:
      runs = {name: dataclasses.replace(r, config={**r.config, 'data_dir': args.data_dir}) for name, r in runs.items()}
    for loaded in runs.values():
      for suite in suites:
        suite.check(loaded)
    out = Path(args.out or Path(args.workdirs[0]) / 'evaluation')
    require(not out.is_file(), f'--out {out} is a file; give a folder')
    found = {}
    jobs = [(name, suite) for name in runs for suite in suites]
    for name, suite in tqdm(jobs, disable=args.no_progress, desc='evaluate'):
      suite_name = suite.__name__.rsplit('.', 1)[1]
      t0 = time.perf_counter()
      with matmul_precision(runs[name].config['matmul_precision']):  # as the run trained
        metrics, figures = suite.run(runs[name], root_key(args.seed), num_samples=args.num_samples,
                                     iwae_samples=args.iwae_samples, progress=not args.no_progress)
      found.setdefault(name, {})[suite_name] = {'metrics': metrics, 'seconds': time.perf_counter() - t0}
      (out / 'figures').mkdir(parents=True, exist_ok=True)
      for fig_name, fig in figures.items():
        fig.savefig(out / 'figures' / f'{name}-{suite_name}-{fig_name}.png', dpi=100)
  except UserError as e:
    errors.report('evaluate', str(e))
    return 2
  about = {name: {'model': r.config['model'], 'step': r.step} for name, r in runs.items()}
  (out / 'results.json').write_text(json.dumps(found, indent=2))
  (out / 'comparison.md').write_text(evaluation.comparison(found, about))
  (out / 'report.md').write_text(report(found, about))
  if args.result:
    results.write(args.result, as_result(found, about, runs, args))
  print(report(found, about))
  return 0


def as_result(found: dict, about: dict, runs: dict, args) -> dict:
  """The comparison table as a result file: one row per run, each suite's headline numbers."""
  rows = [{'run': name, **about[name], **{f'{suite}: {k}': v for suite, r in suites.items()
                                          for k, v in evaluation.headline(suite, r['metrics']).items()}}
          for name, suites in found.items()]
  keys = list(dict.fromkeys(k for row in rows for k in row))
  data = '; '.join(sorted({f"{r.config['dataset']} ({r.config.get('data_dir') or 'embedded'})" for r in runs.values()}))
  return results.make(
      title=args.title, page=args.page, command=shlex.join(['python', 'scripts/evaluate.py', *sys.argv[1:]]),
      summary=f"{', '.join(found)} on {data}: the suites {args.suites} (seed {args.seed}), each suite's headline "
              'numbers with their units.',
      columns=[{'key': k, 'label': k} for k in keys], rows=rows)


if __name__ == '__main__':
  sys.exit(main())
