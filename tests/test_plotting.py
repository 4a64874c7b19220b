"""Figures: the loss curve stays readable after the untrained epoch 0; image rows; ROC curves."""

import numpy as np

from jaxae import plotting

RECORDS = [{'epoch': 0, 'split': 'eval', 'loss': 540.0}, {'epoch': 1, 'split': 'train', 'loss': 120.0},
           {'epoch': 1, 'split': 'eval', 'loss': 110.0}, {'epoch': 2, 'split': 'train', 'loss': 105.0},
           {'epoch': 2, 'split': 'eval', 'loss': 103.0}]


def test_loss_axis_fits_the_trained_epochs_and_marks_epoch_0():
  ax = plotting.loss_curves(RECORDS).axes[0]
  lo, hi = ax.get_ylim()
  assert lo < 103 and 120 < hi < 540  # epoch 0 does not squash the curve
  assert [t.get_text() for t in ax.texts] == ['epoch 0: 540']
  only_start = plotting.loss_curves(RECORDS[:1]).axes[0]  # a run at epoch 0: nothing to fit, nothing written
  assert len(only_start.texts) == 0 and only_start.get_ylim()[0] < 540 < only_start.get_ylim()[1]


def test_image_rows_and_roc_curves():
  images = np.random.default_rng(0).random((4, 8, 8, 1))
  fig = plotting.image_rows({'a': images, 'b': images, 'c': images}, cols=4)
  assert [ax.get_title() for ax in fig.axes] == ['a', 'b', 'c']
  roc = plotting.roc_curves({'class 1': (np.array([0, 0.5, 1]), np.array([0, 1, 1]), 0.75)})
  assert roc.axes[0].get_legend().get_texts()[0].get_text() == 'class 1 (0.750)'
