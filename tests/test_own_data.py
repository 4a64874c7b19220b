"""Training on your own arrays and random-access sources, with the checks of the dataset route."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from jaxae import data
from jaxae.errors import UserError
from jaxae.loop import train
from jaxae.runs import load

DIGITS = data.load_digits()['train']
RAW = (DIGITS['image'][..., 0] * 255).astype(np.uint8)  # [N, 8, 8] uint8, as a user's images often are


class Source:
  """A `tfds.data_source`-like random-access source."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {'image': self.images[i], 'label': self.labels[i]}


def test_train_and_load_a_run_on_your_own_arrays(tmp_path):
  own = data.from_arrays(RAW[:1500], DIGITS['label'][:1500], jnp.asarray(RAW[1500:]), DIGITS['label'][1500:])
  result = train.train_and_evaluate(tiny(epochs=3), tmp_path, progress=False, data=own)
  evals = [r['loss'] for r in result.records if r['split'] == 'eval']
  assert result.config['dataset'] == 'arrays' and evals[-1] < 0.8 * evals[0]
  loaded = load(tmp_path, data=own)
  assert len(loaded.splits.eval['image']) == 297 and loaded.splits.train['image'].max() <= 1.0
  without = load(tmp_path)  # the model loads without its data; the data are asked for only when needed
  np.testing.assert_array_equal(jax.tree.leaves(without.state.params)[0], jax.tree.leaves(loaded.state.params)[0])
  with pytest.raises(UserError, match='dataset=arrays is a run on your own arrays: pass them again'):
    _ = without.splits


def test_a_random_access_source_and_a_holdout(tmp_path):
  own = {'train': data.from_source(Source(RAW[..., None], DIGITS['label'])), 'test': None}
  result = train.train_and_evaluate(tiny(epochs=1, holdout=0.25), tmp_path, progress=False, data=own)
  assert result.records[1]['step'] == -(-1348 // 64)  # 1797 - round(0.25 * 1797) training images


@pytest.mark.parametrize('images,labels,overrides,message', [
    (np.where(np.arange(64).reshape(1, 8, 8) == 5, np.nan, RAW[:300] / 255.0), None, {}, 'contain NaN or Inf'),
    (RAW[:300].astype(np.float32), None, {}, 'outside [0, 1], which a Bernoulli likelihood needs'),
    (np.ones((300, 10, 10), np.float32), None, {'arch': 'conv', 'conv_features': (8, 16)}, 'does not fit a conv net'),
    (RAW[:300], np.arange(299), {}, 'expected 300 integer labels'),
    (RAW[:300].reshape(300, 64), None, {}, 'expected images [N, H, W] or [N, H, W, C]'),
    (RAW[:300], None, {'dataset': 'digits'}, 'data= is given, so the dataset is your arrays'),
])
def test_own_data_gets_the_dataset_checks_before_anything_is_written(tmp_path, images, labels, overrides, message):
  with pytest.raises(UserError, match=message.replace('[', r'\[').replace('(', r'\(')):
    train.train_and_evaluate(tiny(**overrides), tmp_path / 'run', progress=False,
                             data=data.from_arrays(images, labels))
  assert not (tmp_path / 'run').exists()


@pytest.mark.default_codegen
@pytest.mark.parametrize('data_mode', ['resident', 'streaming'])
def test_uint8_images_stay_uint8_in_the_loop_and_train_exactly_as_their_floats(tmp_path, data_mode):
  pixels = data.from_arrays(RAW, DIGITS['label'])
  floats = data.from_arrays(data.to_float(RAW), DIGITS['label'])
  config = tiny(data_mode=data_mode, binarize='dynamic')
  run, _ = train.setup(config, tmp_path / 'setup', pixels)
  images = run.train_data['image']
  assert images.dtype == np.uint8 and images.nbytes == images.size == 1617 * 64  # 1 byte a pixel
  assert isinstance(images, np.ndarray) == (data_mode == 'streaming')
  a = train.train_and_evaluate(config, tmp_path / 'u8', progress=False, data=pixels)
  b = train.train_and_evaluate(config, tmp_path / 'f32', progress=False, data=floats)
  assert [r['loss'] for r in a.records] == [r['loss'] for r in b.records]
  for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params), strict=True):
    np.testing.assert_array_equal(x, y)
