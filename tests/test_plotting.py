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


def test_code_panels_lines_and_heatmap():
  rng = np.random.default_rng(0)
  z, labels = rng.normal(size=(50, 2)), rng.integers(0, 10, 50)
  fig = plotting.code_panels({'a': (z, labels, None), 'b': (z, labels, lambda v: -np.sum(v**2, -1)),
                              'c': (z, labels, None)}, cols=2)
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert [ax.get_title() for ax in panels] == ['a', 'b', 'c']
  assert len(panels[1].collections) > len(panels[0].collections)  # the density's contours under the points
  line = plotting.lines([1, 2, 4], {'x': [3.0, 2.0, 1.0], 'y': [1.0, 1.0, 1.0]}, 'k', 'mse', logx=True).axes[0]
  assert [t.get_text() for t in line.get_legend().get_texts()] == ['x', 'y'] and line.get_xscale() == 'log'
  table = np.array([[np.nan, 0.9], [0.7, np.nan]])
  heat = plotting.heatmap(table, [0, 1], ['a', 'b'], 'col', 'row').axes[0]
  assert sorted(t.get_text() for t in heat.texts) == ['0.70', '0.90']  # NaN cells left blank
