"""The run's two logs, owned by one object: `metrics.jsonl` (`jaxae.metrics.MetricsLog`) and the TensorBoard
events (`jaxae.loop.tensorboard.EventLog`), each cut back to the checkpoint a run resumes from before anything
is appended. Process 0 writes them; the other processes keep the records in memory only.
"""

import time
from pathlib import Path

import jax

from jaxae import config as config_lib
from jaxae import metrics
from jaxae.loop import parallel, tensorboard
from jaxae.loop.keys import impl_name


def header(config: dict, mesh, done: int) -> dict:
  """metrics.jsonl's header of this start: where and how the run computes from step `done` on."""
  device = mesh.devices.flat[0]
  return {'start_step': done, 'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'backend': device.platform,
          'device_kind': device.device_kind, 'devices': int(mesh.devices.size), 'processes': jax.process_count(),
          'precision': config['precision'],
          'matmul_precision': jax.config.jax_default_matmul_precision or 'default',  # type: ignore[attr-defined]
          'prng_impl': impl_name(config['prng_impl']), 'kernels': config['kernels'], 'jax': jax.__version__}


class RunLog:
  """metrics.jsonl and the TensorBoard events of a run starting from step `done`, which ends epoch
  `epochs_done` (-1 and 0 for a fresh start: nothing is kept)."""

  def __init__(self, workdir: Path, config: dict, mesh, done: int, epochs_done: int):
    primary = parallel.is_primary()
    self.metrics = metrics.MetricsLog(workdir / 'metrics.jsonl' if primary else None, epochs_done,
                                      header(config, mesh, done))
    self.events = tensorboard.EventLog(workdir / tensorboard.FOLDER / tensorboard.FILE if primary else None,
                                       done if epochs_done >= 0 else -1, config_lib.to_json(config))

  @property
  def records(self) -> list[dict]:
    """The epoch records of the run so far (those kept from before this start included)."""
    return self.metrics.records

  def epoch(self, epoch: int, step: int, split: str, sums: dict, **extra) -> dict:
    """One epoch's record from its metric sums (means per example; `skipped_steps` is not one), to both logs."""
    means = metrics.means({k: v for k, v in sums.items() if k != 'skipped_steps'})
    record = {'epoch': epoch, 'split': split, 'step': step, **means, **extra}
    self.metrics.write(record)
    self.events.scalars(step, split, {k: v for k, v in record.items() if k not in ('epoch', 'split', 'step')})
    return record

  def figures(self, step: int, paths: dict[str, Path]) -> None:
    """The figures' PNG files as TensorBoard images at `step`."""
    self.events.figures(step, paths)
