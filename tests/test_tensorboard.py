"""TensorBoard event files: every metric of metrics.jsonl, the figures and the config, read back from the file;
a resumed run appends without logging a step twice; a record cut short by a kill is dropped."""

import io
import json
import struct

import matplotlib.image
import numpy as np
from conftest import tiny
from tensorboardX.crc32c import crc32c

from jaxae import metrics
from jaxae.loop import tensorboard, train


def test_the_framing_is_tfrecords_with_masked_crc32c():
  assert crc32c(b'123456789') == 0xE3069283  # the CRC-32C (Castagnoli) check value
  record = tensorboard.frame(b'abc')
  assert struct.unpack('<Q', record[:8])[0] == 3 and record[12:15] == b'abc' and len(record) == 3 + 16
  rotated = lambda c: (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # TFRecord's mask
  assert struct.unpack('<I', record[15:])[0] == rotated(crc32c(b'abc'))


def test_a_run_logs_every_metric_figure_and_its_config_and_a_resume_appends_no_step_twice(tmp_path):
  train.train_and_evaluate(tiny(epochs=1, num_figure_images=4), tmp_path, progress=False)
  train.train_and_evaluate(tiny(epochs=2, num_figure_images=4), tmp_path, progress=False)  # resumed
  train.train_and_evaluate(tiny(epochs=2, num_figure_images=4), tmp_path, progress=False)  # finished: figures again
  records = metrics.read(tmp_path / 'metrics.jsonl')
  scalars = tensorboard.scalars(tmp_path)
  expected = {}
  for r in records:
    for k, v in r.items():
      if k not in ('epoch', 'split', 'step'):
        expected.setdefault(f"{r['split']}/{k}", []).append((r['step'], float(np.float32(v))))
  assert scalars == expected and {'train/loss', 'eval/loss', 'eval/kl', 'train/seconds'} <= set(scalars)
  assert [s for s, _ in scalars['eval/loss']] == [0, 26, 52]
  images = tensorboard.images(tmp_path)
  assert set(images) == {'figures/loss', 'figures/samples', 'figures/reconstructions'}
  assert all([s for s, _ in v] == [26, 52] for v in images.values())  # the first start's, and the last (once)
  events = tensorboard.read(tmp_path / tensorboard.FOLDER / tensorboard.FILE)
  for e in events:
    for v in e.summary.value:
      if v.HasField('image'):
        png = matplotlib.image.imread(io.BytesIO(v.image.encoded_image_string), format='png')
        assert png.shape[:2] == (v.image.height, v.image.width) and v.image.colorspace == 4
  config = [v.tensor.string_val[0].decode() for e in events for v in e.summary.value if v.tag == 'config/text_summary']
  first = {**json.loads((tmp_path / 'config.json').read_text()), 'epochs': 1}  # the config the run started with
  assert len(config) == 1 and json.loads(config[0]) == first
  assert events[0].file_version == 'brain.Event:2'


def test_a_record_cut_short_by_a_kill_is_dropped_and_the_next_start_rewrites_the_file(tmp_path):
  path = tmp_path / tensorboard.FOLDER / tensorboard.FILE
  log = tensorboard.EventLog(path, -1, '{}')
  for step in (0, 10, 20):
    log.scalars(step, 'eval', {'loss': step / 10, 'note': 'words are not scalars'})
  whole = path.read_bytes()
  path.write_bytes(whole + tensorboard.frame(b'x' * 40)[:30])  # killed while writing
  assert [s for s, _ in tensorboard.scalars(tmp_path)['eval/loss']] == [0, 10, 20]
  path.write_bytes(whole[:-3])  # a bad CRC at the end
  assert [s for s, _ in tensorboard.scalars(tmp_path)['eval/loss']] == [0, 10]
  log = tensorboard.EventLog(path, 10, '{}')  # resumed from the checkpoint at step 10
  log.scalars(20, 'eval', {'loss': 2.5})
  assert tensorboard.scalars(tmp_path) == {'eval/loss': [(0, 0.0), (10, 1.0), (20, 2.5)]}
  assert tensorboard.EventLog(None, -1, '{}').scalars(0, 'eval', {'loss': 1.0}) is None  # not process 0: nothing
