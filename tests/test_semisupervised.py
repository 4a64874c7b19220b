"""Semi-supervised training: labels_per_class hides labels, the semi-supervised AAE learns from the rest."""

import jax
import numpy as np
import pytest
from conftest import tiny
from test_conditional import patterns

from jaxae import cli, data, load, steps
from jaxae.data.prepare import keep_labels
from jaxae.errors import UserError
from jaxae.evaluation import semisupervised
from jaxae.loop import train


def test_labels_per_class_keeps_the_first_n_of_each_class_and_marks_the_rest_unlabelled():
  labels = np.array([3, 1, 3, 3, 1, 0, 1, 0])
  kept = keep_labels({'image': np.zeros((8, 2, 2, 1)), 'label': labels}, 2)['label']
  np.testing.assert_array_equal(kept, [3, 1, 3, -1, 1, 0, -1, 0])
  assert keep_labels({'label': labels}, 0)['label'] is labels
  with pytest.raises(UserError, match='labels_per_class=3, but class 0 has 2 training images: give at most 2'):
    keep_labels({'label': labels}, 3)


def test_every_image_gets_a_labelled_partner_and_the_labelled_ones_share_the_rows_evenly():
  """The labelled mini-batch behind every batch: row i's partner is a labelled image with its own label, each of
  the L labelled images partners N/L rows (to one), the same for the same seed; nothing when all or none are
  labelled."""
  labels = keep_labels({'label': np.repeat(np.arange(5), 20)}, 3)['label']  # 15 of 100 labelled
  images = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
  partners = data.labelled_partners({'image': images, 'label': labels}, seed=0)
  source = partners['labelled_image'][:, 0, 0, 0].astype(int)  # each image holds its own row number
  assert partners['labelled_image'].shape == (100, 2, 2, 1) and partners['labelled_label'].dtype == np.int32
  assert (labels[source] >= 0).all() and np.array_equal(partners['labelled_label'], labels[source])
  counts = np.bincount(source, minlength=100)[labels >= 0]
  assert counts.sum() == 100 and counts.min() == 6 and counts.max() == 7  # 100 rows over 15 images
  again = data.labelled_partners({'image': images, 'label': labels}, seed=0)
  other = data.labelled_partners({'image': images, 'label': labels}, seed=1)
  assert np.array_equal(again['labelled_label'], partners['labelled_label'])
  assert not np.array_equal(other['labelled_image'], partners['labelled_image'])
  assert data.labelled_partners({'image': images, 'label': np.arange(100) % 5}, 0) == {}
  assert data.labelled_partners({'image': images, 'label': -np.ones(100, int)}, 0) == {}


@pytest.mark.default_codegen
def test_the_labelled_mini_batch_reaches_the_step_alike_from_device_resident_and_streamed_data(tmp_path):
  """Both data paths give each batch its labelled partners: the same training, bit for bit, and every step's
  classification phase sees a whole batch of labelled images (the mean of 'labelled' is the batch size but for
  the epoch's last, partial batch)."""
  config = tiny(model='ssaae', epochs=1, labels_per_class=3, hidden=(32, 16), disc_hidden=(16,), latent_dim=4)
  runs = {mode: train.train_and_evaluate({**config, 'data_mode': mode}, tmp_path / mode, progress=False)
          for mode in ('resident', 'streaming')}
  for a, b in zip(*(jax.tree.leaves(r.state.params) for r in runs.values()), strict=True):
    np.testing.assert_array_equal(a, b)
  n = len(load(tmp_path / 'resident').splits.train['label'])
  sizes = [64] * (n // 64) + ([n % 64] if n % 64 else [])
  record = next(r for r in runs['resident'].records if r['split'] == 'train')
  assert record['labelled'] == pytest.approx(sum(s * s for s in sizes) / n)


def test_the_semi_supervised_aae_classifies_from_few_labels_and_the_suite_reports_the_baselines(tmp_path):
  """Ten classes, each one fixed pattern, 10 labelled images per class among 1,000: the held-out error of
  q(y|x) is below 5%, as the suite recomputes it, beside the baselines fitted on the 100 labelled images."""
  x, y, _ = patterns(1000, 1)
  x_test, y_test, _ = patterns(200, 3)
  sets = data.from_arrays(x, y, x_test, y_test)
  config = tiny(model='ssaae', epochs=10, learning_rate=3e-3, latent_dim=4, binarize='none', labels_per_class=10,
                disc_hidden=(32, 32))
  result = train.train_and_evaluate(config, tmp_path, progress=False, data=sets)
  loaded = load(tmp_path, data=sets)
  assert (np.asarray(loaded.splits.train['label']) >= 0).sum() == 100
  predicted = np.asarray(steps.bind(loaded.model.classify, loaded.config)(loaded.state, x_test))
  metrics = semisupervised.run(loaded, jax.random.key(0))[0]
  assert metrics['error'] == pytest.approx(np.mean(predicted != y_test)) and metrics['error'] < 0.05
  last_eval = [r for r in result.records if r['split'] == 'eval'][-1]
  assert metrics['error'] == pytest.approx(last_eval['error'], abs=1e-6)  # the loop's held-out error
  assert (metrics['labelled'], metrics['unlabelled']) == (100, 1000 - 100)
  assert all(0 <= metrics[k] <= 1 for k in semisupervised.HEADLINE)


def test_a_conditional_family_refuses_unlabelled_images(tmp_path, capsys):
  code = cli.main(['--model', 'cvae', '--set', 'labels_per_class=5', '--workdir', str(tmp_path / 'run'),
                   '--no-progress'])
  err = capsys.readouterr().err.strip()
  assert code == 2 and 'label -1 is outside 0..9: a conditional family needs every image labelled' in err
  assert len(err.splitlines()) == 1 and not (tmp_path / 'run').exists()


def test_the_semi_supervised_aae_refuses_data_without_a_single_label(tmp_path):
  """It trained to a held-out error of 1.0 without a word."""
  images = data.load_digits()['train']['image']
  unlabelled = data.from_arrays(images, np.full(len(images), -1))  # the held-out images are some of these
  with pytest.raises(UserError, match='ssaae learns to classify from labelled images and none of the training images '
                     r'has a label: give data with labels \(-1 marks an unlabelled image\), or train an unsupervised '
                     r'family \(aae\)'):
    train.train_and_evaluate({'model': 'ssaae'}, tmp_path / 'run', progress=False, data=unlabelled)
  assert not (tmp_path / 'run').exists()
