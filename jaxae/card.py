"""The model card of an exported model (`README.md`): what it is, what it was trained on, how well it does.

`summary(workdir, step)` gathers the run's numbers (its last held-out epoch record up to
`step`, and the headline numbers of any `scripts/evaluate.py` results in
`workdir/evaluation`); `render(header, figures, sizes)` writes them as Markdown with
units, the figures, and how to load the folder. The card is generated from the run's
own files only, so a reader can trace every number to them.

References:
  Mitchell et al., Model Cards for Model Reporting, FAT* 2019.
"""

import json
from pathlib import Path

from jaxae import evaluation, metrics, models
from jaxae.errors import UserError


def unit(name: str, config: dict) -> str:
  """The unit of a family's epoch metric `name` (they are means per held-out image)."""
  if name in ('d_real', 'd_fake'):
    return 'critic score' if config.get('loss') == 'wasserstein' else 'probability'
  if config.get('loss') == 'wasserstein' and name in ('d_loss', 'g_loss'):
    return 'critic score'
  return 'nats per image' if name in ('loss', 'rec', 'kl', 'nelbo', 'd_loss', 'g_loss', 'nll') else ''


def summary(workdir: Path, step: int) -> dict:
  """`{'held_out': {metric: value} of the last eval record at or before step, 'epoch', 'evaluation': {suite:
  {metric: value}}}` from `workdir`'s metrics.jsonl and evaluation/results.json (those present)."""
  evals = [r for r in metrics.read(workdir / 'metrics.jsonl') if r['split'] == 'eval' and r['step'] <= step]
  out: dict = {}
  if evals:
    last = evals[-1]
    out.update(epoch=last['epoch'], held_out={k: v for k, v in last.items() if k not in ('epoch', 'split', 'step')})
  results = workdir / 'evaluation' / 'results.json'
  if results.is_file():
    try:
      runs = json.loads(results.read_text())
      mine = runs.get(workdir.name) or (next(iter(runs.values())) if len(runs) == 1 else {})
      out['evaluation'] = {suite: evaluation.headline(suite, r['metrics']) for suite, r in mine.items()}
    except (ValueError, KeyError, TypeError, AttributeError):  # JSON or its layout damaged
      raise UserError(f'{results} is damaged (not the results scripts/evaluate.py writes): evaluate the run again, '
                      'or move that file away to export without its numbers') from None
  return out


def render(header: dict, figures: list[str], sizes: dict[str, int]) -> str:
  """The card's Markdown."""
  config, name, numbers = header['config'], header['model'], header.get('metrics', {})
  doc = models.get(name).__doc__ or ''
  family = ' '.join(doc.strip().split('\n\n')[0].split())  # the docstring's first paragraph
  shape = '×'.join(map(str, header['input_shape']))
  trained = header.get('progress') or f"step {header['step']:,}"  # exports of format 1 say only the step
  fp = config.get('data_fingerprint', {})
  data = f"`{config['dataset']}`" + (f" ({fp['train']['count']:,} training and {fp['eval']['count']:,} held-out "
                                     f"images)" if 'train' in fp else '')
  lines = ['---', 'library_name: jaxae', f'tags: [jaxae, jax, flax, {name}]', '---', '',
           f'# {name}, trained with jaxae', '', family, '',
           '| | |', '|---|---|', f'| family | `{name}` ({config.get("arch", "mlp")}) |', f'| input | {shape} |',
           f'| data | {data} |', f"| binarization | {config.get('binarize', 'none')} |",
           f"| training | {trained}, batch {config['batch_size']}, learning rate "
           f"{config['learning_rate']:g}, seed {config['seed']} |",
           f"| weights | {header['params_count']:,} parameters, {header['batch_stats_count']:,} batch statistics |",
           f"| jaxae | {header['jaxae_version']} (format {header['format']} {header['format_version']}) |", '']
  held = numbers.get('held_out', {})
  if held:
    lines += [f"## Held-out metrics (epoch {numbers['epoch']})", '', '| metric | value | unit |', '|---|---|---|']
    lines += [f'| {k} | {evaluation.number(v)} | {unit(k, config)} |' for k, v in held.items()]
    lines += ['']
  for suite, values in numbers.get('evaluation', {}).items():
    lines += [f'## Evaluation: {suite}', '', '| metric | value |', '|---|---|']
    lines += [f'| {k} | {evaluation.number(v)} |' for k, v in values.items()] + ['']
  if figures:
    lines += ['## Figures', ''] + [f'![{f[:-4]}](figures/{f})' for f in figures] + ['']
  calls = []
  if models.can(name, 'sample'):
    calls.append('images = model.sample(jax.random.key(0), 16)  # [16, ' + ', '.join(map(str, header['input_shape']))
                 + '] in [0, 1]')
  if models.can(name, 'encode'):
    calls.append('codes = model.encode(images)  # and model.decode(codes), model.reconstruct(images)')
  lines += ['## Use', '', '```python', 'import jax', 'import jaxae', '', 'model = jaxae.load("path/to/this/folder")',
            *calls, '```', '', '## Files', '', '| file | bytes |', '|---|---|']
  lines += [f'| {f} | {b:,} |' for f, b in sizes.items()]
  return '\n'.join(lines) + '\n'
