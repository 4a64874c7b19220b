"""Class labels as network inputs, for the conditional families (`CAN` holds 'conditional').

A label `y` in `[0, num_classes)` enters a network as its one-hot vector: concatenated to the code or noise of
a decoder or generator (`join_code`, Mirza & Osindero 2014; Sohn et al. 2015), and to the image of an encoder or
discriminator (`join_image`): to the flattened pixels of an MLP, as `num_classes` constant channels of a conv
net (the usual conditional DCGAN input). `num_classes = 0` means unconditional: every function returns its
input unchanged, so one family serves both.

References:
  Mirza & Osindero, Conditional Generative Adversarial Nets, arXiv:1411.1784, 2014.
  Sohn, Lee & Yan, Learning Structured Output Representation using Deep Conditional Generative Models,
  NeurIPS 2015.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.errors import UserError, require


def one_hot(labels: jax.Array, num_classes: int) -> jax.Array | None:
  """`[B]` int labels -> `[B, num_classes]` float32 one-hot (a label -1, e.g. padding, gives zeros); None if
  `num_classes` is 0."""
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) if num_classes else None


def join_code(z: jax.Array, y: jax.Array | None) -> jax.Array:
  """`[B, d]` codes and `[B, K]` one-hot labels -> `[B, d + K]` (`z` itself when `y` is None)."""
  return z if y is None else jnp.concatenate([z, y.astype(z.dtype)], axis=-1)


def join_image(x: jax.Array, y: jax.Array | None, arch: str) -> jax.Array:
  """`[B, H, W, C]` images and `[B, K]` one-hot labels -> an encoder's input: `[B, H*W*C + K]` for 'mlp',
  `[B, H, W, C + K]` (the label as constant channels) for 'conv'; `x` itself when `y` is None."""
  if y is None:
    return x
  y = y.astype(x.dtype)
  if arch == 'conv':
    return jnp.concatenate([x, jnp.broadcast_to(y[:, None, None, :], (*x.shape[:3], y.shape[-1]))], axis=-1)
  return jnp.concatenate([x.reshape(x.shape[0], -1), y], axis=-1)


def balanced(n: int, num_classes: int) -> jax.Array:
  """The default requested labels of `n` samples: every class in turn, `[0, 1, ..., K-1, 0, 1, ...]` `[n]`."""
  return jnp.arange(n, dtype=jnp.int32) % num_classes


def style_grid(z: jax.Array, num_classes: int) -> tuple[jax.Array, jax.Array]:
  """The class x style grid's inputs: each of the `R` codes `z: [R, d]` once per class, `(z [R*K, d], labels
  [R*K])` in row-major order, so a grid of K columns shows one style per row and one class per column."""
  return jnp.repeat(z, num_classes, axis=0), jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), z.shape[0])


def requested(labels, n: int, num_classes: int) -> jax.Array:
  """The labels a caller asks `n` samples of, checked before any tracing: `balanced(n)` for None; `UserError`
  for a count that is not `n` or a label out of range."""
  if labels is None:
    return balanced(n, num_classes)
  labels = np.asarray(labels)
  require(labels.shape == (n,), f'{labels.shape[0] if labels.ndim == 1 else labels.shape} labels for {n} samples: '
          f'give one label per sample, or none for every class in turn')
  check_labels(labels, num_classes, 'requested labels')
  return jnp.asarray(labels, jnp.int32)


def check_labels(labels, num_classes: int, what: str) -> None:
  """`UserError` unless every entry of `labels` is an integer in `[0, num_classes)` (ints, or floats with whole
  values; not booleans, strings or objects)."""
  labels = np.asarray(labels)
  integral = labels.dtype.kind in 'iu' or (labels.dtype.kind == 'f' and bool(np.all(np.isfinite(labels)))
                                           and np.array_equal(labels, np.round(labels)))
  require(labels.size == 0 or integral, f'{what} must be integers in 0..{num_classes - 1}, got '
          f'{labels.dtype.name} values' + (' (True/False are not classes)' if labels.dtype.kind == 'b' else ''))
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels.min() if labels.min() < 0 else labels.max()
    raise UserError(f'{what}: label {int(bad)} is outside 0..{num_classes - 1}: ' + (
        'a conditional family needs every image labelled (-1 marks an unlabelled one)' if bad < 0 else
        f'set num_classes={int(bad) + 1} or more (--set num_classes=...)'))


def check_partly_labelled(splits, num_classes: int, model: str) -> None:
  """`UserError` unless some training images are labelled (in `[0, num_classes)`; -1 marks the others) and every
  held-out image is (its classification error is measured on them): for the families that learn to classify."""
  train, held_out = (np.asarray(split['label']) for split in splits)
  labelled = train[train >= 0]
  require(labelled.size > 0, f'{model} learns to classify from labelled images and none of the training images has '
          'a label: give data with labels (-1 marks an unlabelled image), or train an unsupervised family (aae)')
  check_labels(labelled, num_classes, 'the training labels')
  check_labels(held_out, num_classes, 'the held-out labels')


def check_data(splits, num_classes: int) -> None:
  """`UserError` unless every training and held-out image has a label in `[0, num_classes)`."""
  for name, split in zip(('training', 'held-out'), splits, strict=True):
    check_labels(split['label'], num_classes, f'the {name} labels')
