"""jaxae: the autoencoder family in JAX/Flax: pure losses, linen models, jitted steps, one loop."""

from jaxae import corruption, data, losses, metrics, models, nn, plotting, steps
from jaxae.config import resolve as resolve_config
from jaxae.errors import UserError
from jaxae.train import Result, train_and_evaluate

__all__ = [
    'Result', 'UserError', 'corruption', 'data', 'losses', 'metrics', 'models', 'nn', 'plotting',
    'resolve_config', 'steps', 'train_and_evaluate',
]
