"""Sweeps: many runs of one family trained as one compiled program (`jaxae.sweep`).

    jaxae.sweep({'model': 'vae', 'epochs': 30}, jaxae.sweeps.grid(seeds=3, beta=[0.25, 0.5, 1, 2, 4]), 'runs/beta')

Members that differ only in the seed and in float hyperparameters of the family's step form one group: their
states, keys and those hyperparameters are stacked along a leading member axis and the loop's step runs under
`jax.vmap`, one scan per chunk for all of them (`jaxae.sweeps.stacked`). Other differences (shapes, the
optimizer, the data's preparation) make groups of their own, trained in turn (`jaxae.sweeps.plan`). Every
member is a run of its own in `<workdir>/members/<name>/`, equal to the same config trained alone
(`jaxae.sweeps.group`); `<workdir>/sweep.json`, `sweep.md` and `figures/` compare them (`jaxae.sweeps.report`).
"""

import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax

from jaxae.errors import UserError, require
from jaxae.loop import checkpoint, lock, parallel, restore
from jaxae.loop import train as train_lib
from jaxae.loop import workdir as workdir_lib
from jaxae.loop.compile import matmul_precision
from jaxae.sweeps import group as group_lib
from jaxae.sweeps import plan as plan_lib
from jaxae.sweeps import report, stacked
from jaxae.sweeps.plan import grid, parse_grid

__all__ = ['SweepResult', 'grid', 'parse_grid', 'sweep']


class SweepResult(NamedTuple):
  """`rows`: one per member (`name`, `overrides`, `status`, held-out metrics `eval`); `states`: the members'
  final states, in the order given; `folder`: the sweep's folder."""

  rows: list[dict]
  states: list[Any]
  folder: Path


def sweep(base: Mapping[str, Any], members: Sequence[Mapping[str, Any]], workdir: str | Path, *,
          max_members: int = 0, patience: int = 0, progress: bool = True, data: dict | None = None,
          echo: Callable[[str], None] = print) -> SweepResult:
  """Trains every member (`{**base, **member}`, a config's overrides) as a run of its own, stacked with the
  members it can share a program with; resumes a sweep already in `workdir`.

  Args:
    base: the overrides every member shares (`model` at least).
    members: each member's own overrides, e.g. `grid(seeds=3, beta=[0.5, 1, 2])`.
    workdir: the sweep's folder; member `i` trains in `members/<name>/`.
    max_members: at most this many members per program (0: a group at once); a larger group runs in parts.
    patience: stop a member whose held-out headline metric has not improved for this many evaluations (0: never).
    data: your own arrays, as `train_and_evaluate` takes them.
    echo: where the plan is printed.

  Raises:
    UserError: bad overrides, a folder holding another sweep, a member count that does not split over the
      devices, a member that does not fit a device, or several processes (`jax.distributed`: not yet; one sweep
      per host), each in one line, before anything is trained.
  """
  folder = workdir_lib.check_workdir_path(workdir)
  require(jax.process_count() == 1, 'a sweep runs in one process, its members over that process\'s devices; on '
          'several hosts, run one sweep per host, each with its own members and --workdir')
  members = [dict(m) for m in members]
  require(len(members) > 0, 'a sweep needs at least one member: give --grid KEY=V1,V2 or --seeds N')
  saved = report.read(folder)
  plan_lib.check_unchanged(saved, base, members)
  names = [plan_lib.member_name(i, m) for i, m in enumerate(members)]
  runs = [train_lib.setup({**base, **m}, folder / 'members' / n, data) for n, m in zip(names, members, strict=True)]
  require(len({r.config['model'] for r, _ in runs}) == 1, 'a sweep trains one family: give model= in the base '
          'settings only')
  model, configs = runs[0][0].model, [r.config for r, _ in runs]
  for r, _ in runs:
    require(r.resident, 'a sweep keeps its data on the device (data_mode=resident); this dataset is streamed: '
            'train its members with scripts/train.py')
  member_runs = [group_lib.Member(n, dict(m), folder / 'members' / n, r, s)
              for n, m, (r, s) in zip(names, members, runs, strict=True)]
  swept = plan_lib.swept(configs)
  parts = _parts(_by_structure(plan_lib.groups(model, configs), [s for _, s in runs]), max_members)
  devices = runs[0][0].mesh.devices.size
  for part in parts:
    require(devices == 1 or len(part) % devices == 0, f'{len(part)} members do not split over {devices} devices: '
            f'give a multiple of {devices} members (or max_members= one)')
  begun = any(restore.step_folders(p) for p in (folder / 'checkpoints').glob('program-*'))
  require(not begun or (saved is not None and saved['groups'] == parts), 'this sweep was trained in other '
          'programs (another --max-members); re-run it with the same --max-members')
  folder.mkdir(parents=True, exist_ok=True)
  record = {'base': dict(base), 'members': members, 'names': names, 'swept': swept, 'groups': parts}
  report.write(folder, {**record, 'rows': [], 'status': 'training'})
  with matmul_precision(configs[0]['matmul_precision']), contextlib.ExitStack() as held:
    held.enter_context(lock.held(folder))
    rows, states = _train_parts(folder, member_runs, parts, patience, progress, echo, held)
  report.write(folder, {**record, 'rows': rows, 'status': 'done'})
  (folder / 'sweep.md').write_text(report.table(rows, _metrics(rows)))
  given = {key for member in members for key in member}  # the swept keys a user named (not what follows from them)
  report.figures(folder, rows, [k for k in swept if k in given], _metrics(rows))
  return SweepResult(rows, states, folder)


def _by_structure(groups: list[list[int]], fresh: list) -> list[list[int]]:
  """Each group split by the structure of its members' states (a value can add a part to the state, such as a
  GAN's generator average for `ema_decay` > 0): only states of one structure stack."""
  split: list[list[int]] = []
  for g in groups:
    found: dict[str, list[int]] = {}
    for i in g:
      leaves = jax.tree_util.tree_flatten_with_path(fresh[i])[0]
      found.setdefault(str([(jax.tree_util.keystr(path), a.shape, a.dtype) for path, a in leaves]), []).append(i)
    split += found.values()
  return split


def _parts(groups: list[list[int]], max_members: int) -> list[list[int]]:
  """Each group in parts of at most `max_members` members (0: whole)."""
  size = lambda g: max_members or len(g)
  return [g[i:i + size(g)] for g in groups for i in range(0, len(g), size(g))]


def _metrics(rows: Sequence[Mapping]) -> list[str]:
  return sorted({k for r in rows for k in r['eval']})


def _train_parts(folder: Path, members: list, parts: list[list[int]], patience: int, progress: bool,
                 echo: Callable, held: contextlib.ExitStack) -> tuple[list[dict], list]:
  """Trains the groups' parts in turn; each member's row and final state, in the members' order."""
  rows: list[dict | None] = [None] * len(members)
  states: list[Any] = [None] * len(members)
  echo(f'sweep: {len(members)} members in {len(parts)} program(s)')
  for p, part in enumerate(parts):
    arrays = _stacked_names(members[part[0]])
    varying = [k for k in plan_lib.swept([members[i].run.config for i in part]) if k in arrays]
    group = group_lib.Group.of([members[i] for i in part], varying)
    for m in group.members:
      m.workdir.mkdir(parents=True, exist_ok=True)
      held.enter_context(lock.held(m.workdir))
    part_rows, part_states = _train_group(group, folder, p, patience, progress, echo)
    for i, r, s in zip(part, part_rows, part_states, strict=True):
      rows[i], states[i] = r, s
  return [r for r in rows if r is not None], states


def _stacked_names(member) -> set[str]:
  """The step hyperparameters of `member`'s family that a group carries as arrays."""
  return plan_lib.stackable(member.run.model, [member.run.config]) - {'seed'}


def _train_group(group: group_lib.Group, folder: Path, index: int, patience: int, progress: bool, echo: Callable
                 ) -> tuple[list[dict], list]:
  """One program: resume, print the plan, train, write the members' figures; the members' rows and states."""
  from tqdm.auto import tqdm

  from jaxae.loop.train import STOP

  n = len(group.members)
  with checkpoint.Checkpointer(folder / 'checkpoints' / f'program-{index}', group.run.config['keep_checkpoints']
                               ) as ckpt:
    resumed = group_lib.resume(group, ckpt)
    group = _compiled(group, resumed, index, echo)
    with tqdm(total=group.run.plan.total_steps, initial=resumed[1], disable=not (progress and parallel.is_primary()),
              unit='step', desc=f'sweep {index}') as bar:
      states, statuses, member_logs = group_lib.train(group, ckpt, resumed, patience, STOP.is_set, bar)
  group_lib.figures(group, states, member_logs)
  rows = [report.row(m.name, m.overrides, s, log.records)
          for m, s, log in zip(group.members, statuses, member_logs, strict=True)]
  return rows, stacked.unstack(states, n)


def _compiled(group: group_lib.Group, resumed: tuple, index: int, echo: Callable) -> group_lib.Group:
  """`group` with its chunk compiled ahead of time, once its plan and memory are printed; `UserError` if it
  does not fit the device (a member alone, or the group: then how many members would)."""
  states, _, statuses, _ = resumed
  program = group.program
  chunk = program.fast if program.fast is not None else program.exact
  compiled = chunk.lower(states, group_lib.alive(statuses), group.data, 1, 0, group.keys, group.hp).compile()
  n, need, limit = len(group.members), stacked.memory_bytes(compiled), stacked.device_limit(group.run.mesh)
  names = ', '.join(m.name for m in group.members)
  arrays = ', '.join(group.hp) or 'none'
  echo(f'program {index}: {n} members ({names}); stacked hyperparameters: {arrays}; '
       f"memory: {'unknown' if need is None else f'about {need / 2**20:.1f} MiB'}"
       f"{'' if limit is None else f' of {limit / 2**20:.0f} MiB'}")
  if need is not None and limit is not None and need > limit:
    per_member = need / n
    if per_member > limit:
      raise UserError(f'one member needs about {per_member / 2**20:.0f} MiB and a device has {limit / 2**20:.0f}: '
                      'lower batch_size or the widths')
    raise UserError(f'{n} members need about {need / 2**20:.0f} MiB and a device has {limit / 2**20:.0f}: give '
                    f'max_members={max(1, int(limit // per_member))} or fewer')
  return group._replace(program=program._replace(**{'fast' if program.fast is not None else 'exact': compiled}))
