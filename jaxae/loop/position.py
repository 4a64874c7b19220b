"""Where a run is, in epochs, chunks and steps: the arithmetic of a run's schedule, computed once from its config
and the size of its training set.

An epoch is `steps_per_epoch` batches (the last one padded, never dropped); it runs as `chunks_per_epoch`
compiled calls of `chunk` steps each (one call per epoch, unless `checkpoint_every` asks for chunks within it;
the last chunk of an epoch may be shorter). A run's position is the number of chunks done; checkpoints are
numbered by the steps done, as `metrics.jsonl` counts them.
"""

from dataclasses import dataclass

from jaxae.errors import require


@dataclass(frozen=True)
class Plan:
  """A run's schedule: `epochs` of `steps_per_epoch` steps, each in `chunks_per_epoch` calls of `chunk` steps."""

  epochs: int
  steps_per_epoch: int
  chunk: int
  chunks_per_epoch: int

  @classmethod
  def of(cls, config, n_train: int) -> 'Plan':
    """The plan of `config` (`epochs`, `batch_size`, `checkpoint_every`) on `n_train` training images."""
    steps_per_epoch = -(-n_train // config['batch_size'])
    chunk = min(config['checkpoint_every'] or steps_per_epoch, steps_per_epoch)
    return cls(config['epochs'], steps_per_epoch, chunk, -(-steps_per_epoch // chunk))

  @property
  def total_chunks(self) -> int:
    return self.epochs * self.chunks_per_epoch

  @property
  def total_steps(self) -> int:
    return self.epochs * self.steps_per_epoch

  @property
  def whole_chunks(self) -> bool:
    """Whether every chunk is `chunk` steps (no chunk padded with all-masked batches)."""
    return self.chunks_per_epoch * self.chunk == self.steps_per_epoch

  def locate(self, position: int) -> tuple[int, int]:
    """`(epoch, start)` of the chunk run at `position` (chunks done): its epoch, from 1, and its first step
    within that epoch."""
    epoch, c = divmod(position, self.chunks_per_epoch)
    return epoch + 1, c * self.chunk

  def steps_done(self, position: int) -> int:
    """The steps done once `position` chunks are (the last chunk of an epoch ends with the epoch)."""
    epochs, c = divmod(position, self.chunks_per_epoch)
    return epochs * self.steps_per_epoch + min(c * self.chunk, self.steps_per_epoch)

  def ends_epoch(self, position: int) -> bool:
    """Whether `position` chunks done is the end of an epoch."""
    return position % self.chunks_per_epoch == 0

  def position_of(self, done: int, state_step: int) -> int:
    """Chunks done, from the steps done (a checkpoint's number); `UserError` if they do not fall on a chunk
    boundary of this plan."""
    epochs_done, within = divmod(done, self.steps_per_epoch)
    require(within % self.chunk == 0 and int(state_step) <= done,
            f'the checkpoint at {done} does not fall on a chunk boundary of this run ({self.chunk} steps per chunk, '
            f'its state at step {int(state_step)}): it was written by another checkpoint_every or an older jaxae; '
            'use a new workdir')
    return epochs_done * self.chunks_per_epoch + within // self.chunk
