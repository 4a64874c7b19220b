"""`scripts/sweep.py`: train a grid of one family's configs as one program per group.

    python scripts/sweep.py --model vae --grid beta=0.25,0.5,1,2,4 --seeds 3 --epochs 30 --workdir runs/beta

Every option of `scripts/train.py` sets the base config of all members; `--grid KEY=V1,V2,...` (repeatable)
and `--seeds N` make the members. Bad input exits with status 2 and one line; re-running resumes.
"""


from jaxae import cli, errors
from jaxae.errors import UserError


def parser():
  p = cli.parser()
  p.prog, p.description = 'jaxae-sweep', ('Train a grid of configs of one family, stacked in one program where '
                                          'only values differ; re-running on the same workdir resumes.')
  group = p.add_argument_group('the sweep')
  group.add_argument('--grid', action='append', default=[], metavar='KEY=V1,V2,...',
                     help='values of one config key (repeatable: every combination is a member)')
  group.add_argument('--seeds', type=int, default=1, help='seeds per grid point, from --seed (default: 1)')
  group.add_argument('--max-members', type=int, default=0, help='at most this many members per program '
                     '(0: a group at once)')
  group.add_argument('--patience', type=int, default=0, help='stop a member whose held-out headline metric has '
                     'not improved for this many evaluations (0: never)')
  return p


def main(argv=None) -> int:
  from jaxae import sweeps

  p = parser()
  args = p.parse_args(argv)
  if args.workdir is None:
    p.error('the following arguments are required: --workdir')
  try:
    if cli.asks_distributed(args):
      raise UserError('a sweep runs in one process: --distributed and its options are for scripts/train.py; on '
                      'several hosts, run one sweep per host')
    base = cli.overrides_from(args)
    first_seed = int(base.pop('seed', 0))
    members = sweeps.grid(args.seeds, first_seed, **sweeps.parse_grid(args.grid))
    with cli.stop_on_first_ctrl_c():
      result = sweeps.sweep(base, members, args.workdir, max_members=args.max_members, patience=args.patience,
                            progress=not args.no_progress)
  except UserError as e:
    errors.report('jaxae-sweep', str(e))
    return 2
  except KeyboardInterrupt:
    return cli.interrupted('jaxae-sweep')
  print((result.folder / 'sweep.md').read_text(), end='')
  print(f'outputs in {result.folder}')
  return 0


def run() -> None:
  """The entry point (as `jaxae.cli.run`: after Ctrl-C it exits at once, the folders already consistent)."""
  cli.exit_with(main())
