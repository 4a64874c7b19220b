"""One group of a sweep trained as one program: the single run's loop (`jaxae.loop.train`), for M members at once.

Each member keeps a run folder of its own, written as a single run writes it (config.json, metrics.jsonl and
TensorBoard as it trains; its checkpoint and figures when its group ends or is stopped), so `jaxae.load`,
`scripts/evaluate.py` and `scripts/export.py` read a member as they read any run. While the group trains, its
checkpoints hold the stacked states, every member's status and epoch sums beside them: one save for all the
members, which a sweep resumes from exactly after a kill at any moment (the members' logs cut back to it).

A member whose step turns non-finite is frozen at its last good state and marked failed (its step and term);
with `patience`, a member whose held-out headline metric has not improved for `patience` evaluations is
stopped. Both are masks in the program (a stopped member sees only all-masked batches): the others train on.
"""

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.loop import checkpoint, logs
from jaxae.loop import workdir as workdir_lib
from jaxae.loop.step import terms
from jaxae.loop.train import Run
from jaxae.sweeps import stacked


class Member(NamedTuple):
  """One member of a sweep: its folder name, its own overrides, its run (`jaxae.loop.train.setup`) and fresh
  state."""

  name: str
  overrides: dict
  workdir: Path
  run: Run
  fresh: Any


def new_status() -> dict:
  """A member's status: 'training', then 'trained', 'failed' (at `step`, in `term`) or 'stopped' (early, after
  `epoch`); `best` and `since_best` count the held-out evaluations for early stopping."""
  return {'status': 'training', 'step': None, 'term': None, 'epoch': None, 'best': None, 'since_best': 0}


class Group(NamedTuple):
  """A group's members, its compiled program and what every chunk takes: data, keys, hyperparameters."""

  members: list[Member]
  program: stacked.Program
  data: Any
  eval_data: Any
  keys: Any
  hp: dict

  @classmethod
  def of(cls, members: list[Member], swept: list[str]) -> 'Group':
    run = members[0].run
    shared = len({json.dumps(m.run.config['data_fingerprint'], sort_keys=True) for m in members}) == 1
    place = lambda tree: stacked.place(tree, run.mesh)
    return cls(members, stacked.compile_group(run.model, run.config, swept, run.plan, not shared),
               stacked.as_member_data([m.run.train_data for m in members], shared, run.mesh),
               stacked.as_member_data([m.run.eval_data for m in members], shared, run.mesh),
               place(stacked.stack([m.run.keys for m in members])),
               place(stacked.hyperparameters([m.run.config for m in members], swept)))

  def place(self, tree):
    """`tree`, stacked, with its member axis split over the mesh's devices."""
    return stacked.place(tree, self.run.mesh)

  @property
  def run(self) -> Run:
    """The first member's run: its model, plan and the settings every member shares."""
    return self.members[0].run


def resume(group: Group, ckpt: checkpoint.Checkpointer) -> tuple[Any, int, list[dict], list[dict | None]]:
  """`(stacked states, steps done, statuses, each member's epoch sums so far)` from the group's newest checkpoint
  (none: the fresh states, 0)."""
  fresh = group.place(stacked.stack([m.fresh for m in group.members]))
  states, done = ckpt.restore(fresh)
  if not done:
    return fresh, 0, [new_status() for _ in group.members], [None] * len(group.members)
  item = ckpt.restore_loop(done)
  return group.place(states), done, item['statuses'], item['sums']


def check_members(statuses: list[dict], guards, sums, epoch: int, mode: str) -> None:
  """Marks failed each training member whose chunk met a non-finite value (in skip mode: with no step applied),
  with the first bad step and term, as a single run would have stopped."""
  names = [k for k in sums if k != 'count']
  for i, status in enumerate(statuses):
    bad, applied = int(guards.bad_step[i]), float(sums['count'][i])
    if status['status'] == 'training' and bad >= 0 and not (mode == 'skip' and applied > 0):
      status.update(status='failed', step=bad, term=terms(names)[int(guards.bad_term[i])], epoch=epoch)


def early_stop(statuses: list[dict], records: list[dict | None], metric: str, patience: int, epoch: int) -> None:
  """After a held-out evaluation: each training member's best `metric` (lower is better) and the evaluations
  since; one without improvement for `patience` evaluations is stopped (`patience` 0: never)."""
  for status, record in zip(statuses, records, strict=True):
    if status['status'] != 'training' or record is None:
      continue
    if status['best'] is None or record[metric] < status['best']:
      status.update(best=float(record[metric]), since_best=0)
    else:
      status['since_best'] += 1
    if patience and status['since_best'] >= patience:
      status.update(status='stopped', epoch=epoch)


def alive(statuses: list[dict]) -> jax.Array:
  return jnp.asarray([s['status'] == 'training' for s in statuses], jnp.float32)


def member_sums(sums, i: int) -> dict:
  """Member `i`'s row of the stacked sums, as the host floats a single run's chunk gives."""
  return {k: np.float32(v[i]) for k, v in sums.items()}


def logs_for(group: Group, done: int, position: int) -> list[logs.RunLog]:
  """Each member's metrics.jsonl and TensorBoard events, cut back to step `done`."""
  plan = group.run.plan
  epochs_done = position // plan.chunks_per_epoch if position else -1
  return [logs.RunLog(m.workdir, m.run.config, m.run.mesh, done, epochs_done) for m in group.members]


def save(ckpt: checkpoint.Checkpointer, step: int, states, statuses: list[dict], sums: list[dict | None]) -> None:
  """The group's checkpoint `step`: the stacked states, and each member's status and epoch sums so far."""
  floats = [None if m is None else {k: float(v) for k, v in m.items()} for m in sums]
  ckpt.save(step, states, {'statuses': statuses, 'sums': floats})


def write_members(group: Group, step: int, states, sums: list[dict | None]) -> None:
  """Each member's own checkpoint `step` (its state and epoch sums), as a single run leaves it: what `jaxae.load`,
  `scripts/evaluate.py`, `scripts/export.py` and a resume with `scripts/train.py` read. Written when the group
  ends or is stopped; a checkpoint already there is kept."""
  for member, state, member_sums in zip(group.members, stacked.unstack(states, len(group.members)), sums,
                                        strict=True):
    with checkpoint.Checkpointer(member.workdir / 'checkpoints', member.run.config['keep_checkpoints']) as ckpt:
      if step not in ckpt.steps():
        ckpt.save(step, state, {k: float(v) for k, v in (member_sums or {}).items()})


def figures(group: Group, states, member_logs: list) -> None:
  """Each member's figures/, as a single run writes them at its end (TensorBoard images too)."""
  for member, state, log in zip(group.members, stacked.unstack(states, len(group.members)), member_logs,
                                strict=True):
    run = member.run
    written = workdir_lib.write_figures(run.model, state, run.splits.eval, run.keys, run.config, member.workdir,
                                        log.records, run.mesh)
    log.figures(int(state.step), {name: member.workdir / 'figures' / f'{name}.png' for name in written})


def timed(fn, *args):
  t0 = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - t0


def train(group: Group, ckpt: checkpoint.Checkpointer, resumed: tuple, patience: int, stop, bar
          ) -> tuple[Any, list[dict], list]:
  """Trains the group from `resumed` (`resume`'s) to its last epoch: `(stacked states, statuses, member logs)`.
  `stop()`: whether the user asked to stop (after the chunk in hand, once saved); `bar`: a tqdm bar or None."""
  run, plan = group.run, group.run.plan
  states, done, statuses, sums = resumed
  position = plan.position_of(done, done)
  sums = sums if not plan.ends_epoch(position) else [None] * len(statuses)
  member_logs = logs_for(group, done, position)
  if position == 0:
    for m in group.members:
      checkpoint.write_config(m.workdir, m.run.config)
    _evaluate_and_log(group, member_logs, statuses, states, 0, 0)
  policy = checkpoint.SavePolicy(run.config, plan, done, config_due=False)  # the members' configs: at the start
  seconds = 0.0
  while position < plan.total_chunks:
    epoch, start = plan.locate(position)
    (states, guards, chunk_sums), took = timed(run_chunk, group, states, statuses, epoch, start)
    guards, chunk_sums = jax.device_get((guards, chunk_sums))
    check_members(statuses, guards, chunk_sums, epoch, run.config['nonfinite'])
    seconds = (0.0 if start == 0 else seconds) + took
    sums = [_add(None if start == 0 else sums[i], {**member_sums(chunk_sums, i), 'skipped_steps':
                                                   np.float32(guards.skipped[i])}) for i in range(len(statuses))]
    position += 1
    if plan.ends_epoch(position):
      _end_epoch(group, member_logs, statuses, states, epoch, sums, seconds, patience)
    if policy.due(position, stop()):
      save(ckpt, plan.steps_done(position), states, statuses, sums)
      policy.record(plan.steps_done(position))
    if bar is not None:
      bar.update(plan.steps_done(position) - bar.n)
      bar.set_postfix(training=sum(s['status'] == 'training' for s in statuses))
    if stop():
      write_members(group, plan.steps_done(position), states, sums)
      raise KeyboardInterrupt
  write_members(group, plan.total_steps, states, sums)
  for s in statuses:
    s['status'] = 'trained' if s['status'] == 'training' else s['status']
  return states, statuses, member_logs


def run_chunk(group: Group, states, statuses: list[dict], epoch: int, start: int):
  """One chunk of every member: fast, and again exact from the same states if a training member met a non-finite
  value (its first bad step and term are then named). `(states, guards, sums)`."""
  program, live = group.program, alive(statuses)
  args = (live, group.data, epoch, start, group.keys, group.hp)
  if program.fast is not None:
    new, guards, sums = program.fast(states, *args)
    if bool(jnp.all(program.finite(guards, new) | (live == 0))):
      return new, guards, sums
  return program.exact(states, *args)


def _add(sums: dict | None, chunk: dict) -> dict:
  return chunk if sums is None else {k: np.float32(sums[k]) + v for k, v in chunk.items()}


def _end_epoch(group: Group, member_logs: list, statuses: list[dict], states, epoch: int, sums: list[dict],
               seconds: float, patience: int) -> None:
  """The epoch's records of the members still training; held-out ones when due, then early stopping."""
  config, n_train = group.run.config, len(group.run.splits.train['image'])
  state_steps = jax.device_get(states.step)
  for i, log in enumerate(member_logs):
    if statuses[i]['status'] == 'training':
      log.epoch(epoch, int(state_steps[i]), 'train', sums[i], seconds=seconds, examples_per_sec=n_train / seconds,
                skipped_steps=int(sums[i]['skipped_steps']))
  if epoch % config['eval_every'] == 0 or epoch == config['epochs']:
    records = _evaluate_and_log(group, member_logs, statuses, states, epoch, state_steps)
    early_stop(statuses, records, group.run.model.HEADLINE[0], patience, epoch)


def _evaluate_and_log(group: Group, member_logs: list, statuses: list[dict], states, epoch: int, state_steps):
  """Every member's held-out metrics (one vmapped call), recorded for those still training; their records."""
  sums = jax.device_get(group.program.evaluate(states, group.eval_data, group.keys, group.hp))
  steps = np.broadcast_to(np.asarray(state_steps), (len(statuses),))
  return [log.epoch(epoch, int(steps[i]), 'eval', member_sums(sums, i)) if statuses[i]['status'] == 'training'
          else None for i, log in enumerate(member_logs)]
