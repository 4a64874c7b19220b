"""Tied-weight autoencoder: the decoder uses the encoder kernels transposed (W* = W^T).

A preset of `jaxae.models.ae`: same network, loss and steps, other defaults.
"""

from jaxae.models import ae
from jaxae.models.ae import (  # noqa: F401  (the family contract)
  create_state,
  decode,
  encode,
  eval_images,
  eval_step,
  loss_fn,
  make_network,
  train_step,
)


def defaults() -> dict:
  return {**ae.defaults(), 'tied': True}
