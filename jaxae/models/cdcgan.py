"""Conditional DCGAN: the `dcgan` networks (batch norm, stride-2 4x4 convs) conditioned on the class label as
Mirza & Osindero's conditional GAN: the one-hot label joins G's noise and enters D as 10 constant channels.

A preset of `jaxae.models.gan` (`dcgan`'s defaults with `num_classes` = 10).

References:
  Mirza & Osindero, Conditional Generative Adversarial Nets, arXiv:1411.1784, 2014.
  Radford, Metz & Chintala, Unsupervised Representation Learning with Deep Convolutional GANs, ICLR 2016.
"""

from jaxae.models import dcgan, gan
from jaxae.models.gan import *  # noqa: F403  (the family contract: gan.__all__)

CAN = gan.CAN | {'conditional'}


def defaults() -> dict:
  return {**dcgan.defaults(), 'num_classes': 10}
