"""Tied-weight autoencoder: the decoder uses the encoder kernels transposed (W* = W^T).

A preset of `jaxae.models.ae`: same network, loss and steps, other defaults.
"""

from jaxae.models import ae
from jaxae.models.ae import *  # noqa: F403  (the family contract: ae.__all__)


def defaults() -> dict:
  return {**ae.defaults(), 'tied': True}
