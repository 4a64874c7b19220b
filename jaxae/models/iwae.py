"""Importance weighted autoencoder: the VAE trained on the K-sample IWAE bound (K = 5).

A preset of `jaxae.models.vae` (`iwae_samples=5`): same network and steps.
Compare its `iwae_nll` with the VAE's in the likelihood suite.

References:
  Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016.
"""

from jaxae.models import vae
from jaxae.models.vae import *  # noqa: F403  (the family contract: vae.__all__)


def defaults() -> dict:
  return {**vae.defaults(), 'iwae_samples': 5}
