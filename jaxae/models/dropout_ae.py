"""Dropout autoencoder: dropout 0.2 on the input and on the hidden layers, off at evaluation.

A preset of `jaxae.models.ae`: same network, loss and steps, other defaults.
"""

from jaxae.models import ae
from jaxae.models.ae import *  # noqa: F403  (the family contract: ae.__all__)

CAN = frozenset({'encode', 'stochastic'})  # noise / dropout drawn from the step's key


def defaults() -> dict:
  return {**ae.defaults(), 'input_dropout': 0.2, 'dropout_rate': 0.2}
