"""jaxae: the autoencoder family in JAX/Flax: pure losses, linen models, jitted steps, one loop."""

from jaxae import (
                   corruption,
                   data,
                   evaluation,
                   likelihoods,
                   losses,
                   metrics,
                   models,
                   nn,
                   pca,
                   plotting,
                   priors,
                   results,
                   steps,
                   sweeps,
                   tour,
)
from jaxae.config import resolve as resolve_config
from jaxae.errors import UserError
from jaxae.loop import Keys, Result, make_keys, train_and_evaluate
from jaxae.runs import Loaded, load
from jaxae.share import export
from jaxae.sweeps import sweep

__all__ = [
    'Keys', 'Loaded', 'Result', 'UserError', 'corruption', 'data', 'evaluation', 'export', 'likelihoods', 'load',
    'losses', 'make_keys', 'metrics', 'models', 'nn', 'pca', 'plotting', 'priors', 'resolve_config', 'results', 'steps',
    'sweep', 'sweeps', 'tour', 'train_and_evaluate',
]
