"""Denoising autoencoder: Gaussian noise (std 0.3) on the input, loss against the clean input.

Set `noise` to 'masking' or 'salt_and_pepper' (with `noise_level` the probability) for
the other corruptions of Vincent et al. (2008).

A preset of `jaxae.models.ae`: same network, loss and steps, other defaults.
"""

from jaxae.models import ae
from jaxae.models.ae import *  # noqa: F403  (the family contract: ae.__all__)

CAN = frozenset({'encode', 'stochastic'})  # noise / dropout drawn from the step's key


def defaults() -> dict:
  return {**ae.defaults(), 'noise': 'gaussian', 'noise_level': 0.3}
