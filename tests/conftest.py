"""Strict JAX settings and shared helpers for every test."""

import os

os.environ.setdefault('TFDS_DATA_DIR', '/nonexistent-tfds-dir')  # never touch a real TFDS cache

import jax
import pytest

jax.config.update('jax_numpy_rank_promotion', 'raise')

MNIST_DIR = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'mnist')


def tiny(**overrides) -> dict:
  """A small config that trains in seconds on digits."""
  return {'model': 'vae', 'hidden': (64, 32), 'latent_dim': 8, 'conv_features': (8, 16),
          'epochs': 2, 'batch_size': 64, **overrides}


@pytest.fixture
def mnist_dir():
  if not os.path.exists(os.path.join(MNIST_DIR, 't10k-images-idx3-ubyte.gz')):
    pytest.skip('the MNIST test set is not in ../shared/data/mnist')
  return MNIST_DIR
