"""TensorBoard event files beside metrics.jsonl, written without TensorFlow: `tensorboard --logdir runs/`.

One file per run, `WORKDIR/tensorboard/events.out.tfevents.jaxae`: TFRecord framing
(length, masked CRC-32C of it, the serialized `Event` protocol buffer, its masked CRC)
of tensorboardX's `Event` / `Summary` messages. It holds every epoch metric as the
scalar `<split>/<metric>` at the run's step, the config as text at step 0, and the
figures (`figures/*.png`: samples, reconstructions, loss curves, codes) as images at
the step they were drawn.

A resumed run first keeps the events up to its checkpoint's step (the scalars of the
epochs metrics.jsonl keeps), rewritten atomically, then appends: no step is logged
twice, whichever moment the previous start was killed.
Only process 0 writes (the loop passes no folder to the others).

References:
  TensorBoard's event format: tensorboard/compat/proto/event.proto, summary.proto;
  TFRecord: https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details
"""

import struct
import sys
import time
from pathlib import Path

# tensorboardX's package imports PyTorch where it is installed (2.5 s and 0.6 GB in every jaxae process), for
# writers jaxae does not use; its `import torch` fails softly, so it is made to fail while these are imported.
_TORCH_UNLOADED = 'torch' not in sys.modules
if _TORCH_UNLOADED:
  sys.modules['torch'] = None  # type: ignore[assignment]  # Python's way to make an import fail
try:
  from tensorboardX.proto.event_pb2 import Event
  from tensorboardX.proto.summary_pb2 import Summary
  from tensorboardX.record_writer import masked_crc32c
  from tensorboardX.summary import text
finally:
  if _TORCH_UNLOADED:
    del sys.modules['torch']

FOLDER, FILE = 'tensorboard', 'events.out.tfevents.jaxae'


def frame(data: bytes) -> bytes:
  """One TFRecord: `data` with its length and their masked CRC-32Cs."""
  length = struct.pack('<Q', len(data))
  return length + struct.pack('<I', masked_crc32c(length)) + data + struct.pack('<I', masked_crc32c(data))


def read(path: str | Path) -> list[Event]:
  """The events of a file (none if it does not exist), up to a record cut short or corrupt (a killed write)."""
  path, events = Path(path), []
  raw = path.read_bytes() if path.exists() else b''
  at = 0
  while at + 12 <= len(raw):
    (n,) = struct.unpack('<Q', raw[at:at + 8])
    (crc,) = struct.unpack('<I', raw[at + 8:at + 12])
    data = raw[at + 12:at + 12 + n]
    if crc != masked_crc32c(raw[at:at + 8]) or len(data) < n or at + 16 + n > len(raw) or \
        struct.unpack('<I', raw[at + 12 + n:at + 16 + n])[0] != masked_crc32c(data):
      break
    events.append(Event.FromString(data))
    at += 16 + n
  return events


def _series(workdir: str | Path, field: str, value) -> dict[str, list]:
  """`{tag: [(step, value(v)), ...]}` of the summary values of a run's event file that hold `field`."""
  out: dict[str, list] = {}
  for e in read(Path(workdir) / FOLDER / FILE):
    for v in e.summary.value:
      if v.HasField(field):
        out.setdefault(v.tag, []).append((e.step, value(v)))
  return out


def scalars(workdir: str | Path) -> dict[str, list[tuple[int, float]]]:
  """`{tag: [(step, value), ...]}` of a run's event file, in the order written."""
  return _series(workdir, 'simple_value', lambda v: v.simple_value)


def images(workdir: str | Path) -> dict[str, list[tuple[int, bytes]]]:
  """`{tag: [(step, PNG bytes), ...]}` of a run's event file."""
  return _series(workdir, 'image', lambda v: v.image.encoded_image_string)


class EventLog:
  """Appends a run's events to its file; `path` None (processes other than 0) writes nothing.

  `keep_through`: the step of the checkpoint the run starts from (-1: a fresh start keeps nothing); the events up
  to it are kept, the rest dropped before anything is appended.
  """

  def __init__(self, path: Path | None, keep_through: int, config_text: str):
    self.path = path
    if path is not None:
      path.parent.mkdir(exist_ok=True)
      if not self._rewrite(path, lambda e: e.step <= keep_through):
        self._write([Event(wall_time=time.time(), file_version='brain.Event:2'),
                     Event(wall_time=time.time(), step=0, summary=text('config', config_text))])

  @staticmethod
  def _rewrite(path: Path, keep) -> int:
    """Keeps the events of `path` for which `keep(event)` holds, atomically; returns how many."""
    kept = [e for e in read(path) if keep(e)]
    tmp = path.with_suffix('.tmp')
    tmp.write_bytes(b''.join(frame(e.SerializeToString()) for e in kept))
    tmp.replace(path)
    return len(kept)

  def _write(self, events) -> None:
    if self.path is not None:
      with self.path.open('ab') as f:
        f.write(b''.join(frame(e.SerializeToString()) for e in events))

  def scalars(self, step: int, split: str, values: dict) -> None:
    """`<split>/<name>` = value for each number in `values`, at `step`."""
    summary = Summary(value=[Summary.Value(tag=f'{split}/{k}', simple_value=float(v)) for k, v in values.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)])
    self._write([Event(wall_time=time.time(), step=step, summary=summary)])

  def figures(self, step: int, pngs: dict) -> None:
    """Each PNG file of `{name: path}` (the run's `figures/`) as an image tagged `figures/<name>`, at `step`, in
    place of any drawn at `step` before (a finished run started again draws its figures again)."""
    if self.path is None:
      return
    self._rewrite(self.path, lambda e: e.step != step or not any(v.HasField('image') for v in e.summary.value))
    values = []
    for name, path in pngs.items():
      png = Path(path).read_bytes()
      width, height = struct.unpack('>II', png[16:24])  # the PNG's IHDR chunk
      values.append(Summary.Value(tag=f'figures/{name}', image=Summary.Image(
          height=height, width=width, colorspace=4, encoded_image_string=png)))
    self._write([Event(wall_time=time.time(), step=step, summary=Summary(value=values))])
