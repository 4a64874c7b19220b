"""DCGAN: convolutional generator and discriminator (stride-2 4x4 convs, 64-128 features), for
28x28, 32x32 (and any H, W divisible by 4) images, as Radford et al.: batch norm in G (all but the
output layer) and D (all but the input layer), ReLU in G, LeakyReLU 0.2 in D, no dropout, kernels
initialised from N(0, 0.02), Adam 2e-4, beta1 0.5.

Unlike the paper, each step makes two generator updates (`n_generator=2`, each with fresh z), as the widely
used DCGAN-tensorflow does to keep D from winning: on MNIST (9,000 images, 20 epochs) the classifier FD went
22.8 -> 15.0 and the rarest class (1) 2.4% -> 5.6% of samples (README); `n_generator=1` is the paper's step.
Its best setting on MNIST, 1.5x the epoch time (README: over ten seeds its FD is below the MLP GAN's at 100 epochs):
`batch_size=32, n_generator=4, real_label=0.9`.

A preset of `jaxae.models.gan`: same losses and steps, other defaults.

References:
  Radford, Metz & Chintala, Unsupervised Representation Learning with Deep
  Convolutional GANs, ICLR 2016.
"""

from jaxae.models import gan
from jaxae.models.gan import *  # noqa: F403  (the family contract: gan.__all__)


def defaults() -> dict:
  return {**gan.defaults(), 'arch': 'conv', 'norm': 'batch', 'd_norm': 'batch', 'd_dropout': 0.0,
          'init': 'dcgan', 'n_generator': 2}
