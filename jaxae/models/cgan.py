"""Conditional GAN (Mirza & Osindero): the MLP GAN with the one-hot class label joined to G's noise and to
D's image, so that `sample(state, key, n, labels)` draws the digits asked for.

A preset of `jaxae.models.gan` (`num_classes` = 10): same losses and steps, the labels of each training batch
condition both players (`jaxae.conditioning`); every image must be labelled.

References:
  Mirza & Osindero, Conditional Generative Adversarial Nets, arXiv:1411.1784, 2014.
"""

from jaxae.models import gan
from jaxae.models.gan import *  # noqa: F403  (the family contract: gan.__all__)

CAN = gan.CAN | {'conditional'}


def defaults() -> dict:
  return {**gan.defaults(), 'num_classes': 10}
