"""jaxae: the autoencoder family in JAX/Flax: pure losses, linen models, jitted steps, one loop."""

from jaxae import corruption, data, evaluation, losses, metrics, models, nn, pca, plotting, priors, steps, tour
from jaxae.config import resolve as resolve_config
from jaxae.errors import UserError
from jaxae.runs import Loaded, load
from jaxae.train import Result, train_and_evaluate

__all__ = [
    'Loaded', 'Result', 'UserError', 'corruption', 'data', 'evaluation', 'load', 'losses', 'metrics', 'models', 'nn',
    'pca', 'plotting', 'priors', 'resolve_config', 'steps', 'tour', 'train_and_evaluate',
]
