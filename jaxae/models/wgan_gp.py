"""WGAN-GP: a critic with a gradient penalty (lambda = `gp_weight` = 10), `n_critic` = 5 critic
updates per generator update, Adam 1e-4 with beta1 = 0, beta2 = 0.9, as in Gulrajani et al.

The networks are `gan`'s MLPs (set `arch=conv` for DCGAN-shaped ones), so the two
families differ only in the loss and the update schedule.

A preset of `jaxae.models.gan`: same networks and steps, other defaults.

References:
  Gulrajani et al., Improved Training of Wasserstein GANs, NeurIPS 2017, Alg. 1.
"""

from jaxae.models import gan
from jaxae.models.gan import *  # noqa: F403  (the family contract: gan.__all__)


def defaults() -> dict:
  return {**gan.defaults(), 'loss': 'wasserstein', 'gp_weight': 10.0, 'n_critic': 5, 'learning_rate': 1e-4,
          'adam_b1': 0.0, 'adam_b2': 0.9, 'd_dropout': 0.0}
