"""Datasets as dicts of NumPy arrays: `{'image': [N, H, W, C], 'label': int32 [N]}`.

  sources.py   where data come from: digits, IDX files, TFDS, records, your arrays
  records.py   ArrayRecord folders read lazily (data larger than memory)
  prepare.py   a run's data: splits, class filter, binarization, checks, pixels to float, batch order
"""

from jaxae.data import records
from jaxae.data.prepare import (
                                PIXEL_SCALE,
                                Splits,
                                batch_indices,
                                binarize,
                                changes,
                                check_images,
                                fingerprint,
                                holdout_split,
                                is_lazy,
                                keep_classes,
                                labelled_partners,
                                prepare,
                                take,
                                to_float,
)
from jaxae.data.sources import (
                                IDX_DTYPES,
                                KNOWN_TFDS,
                                MAX_IDX_BYTES,
                                as_set,
                                from_arrays,
                                from_source,
                                load,
                                load_digits,
                                load_idx_dir,
                                load_tfds,
                                read_idx,
                                to_images,
)

__all__ = ['IDX_DTYPES', 'KNOWN_TFDS', 'MAX_IDX_BYTES', 'PIXEL_SCALE', 'Splits', 'as_set', 'batch_indices', 'binarize',
           'changes', 'check_images', 'fingerprint', 'from_arrays', 'from_source', 'holdout_split', 'is_lazy',
           'keep_classes', 'labelled_partners', 'load', 'load_digits', 'load_idx_dir', 'load_tfds', 'prepare',
           'read_idx', 'records', 'take', 'to_float', 'to_images']
