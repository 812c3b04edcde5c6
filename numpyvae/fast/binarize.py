"""The numba path's batch taker: numpyvae/oracle/binarize.py's gather and binarization as one
pass of kernels.gather_binarize, the same numbers (the same uniforms from the same Generator
for "dynamic"), into a reused buffer.
"""
import numpy as np

from .kernels import BINARIZE_CODES, gather_binarize


def batch_taker(images_flat, batch_size, mode, rng, dtype):
    """take(idx) -> the binarized batch (b, D) of images_flat[idx] (uint8 (N, D)), a view of
    one reused buffer, `take.buffer` (min(batch_size, N), D) of `dtype`; "dynamic" draws b·D
    uniforms from `rng` with one rng.random call, as the oracle's binarize_into does."""
    B, D = min(batch_size, len(images_flat)), images_flat.shape[1]     # no batch is larger
    out = np.empty((B, D), dtype)                                     # (B, D), reused
    code = BINARIZE_CODES[mode]
    uniforms = np.empty((B if mode == "dynamic" else 0, D), dtype)    # (B, D) or (0, D)

    def take(idx):
        u = uniforms
        if mode == "dynamic":
            u = rng.random(out=uniforms[:len(idx)], dtype=dtype)    # (b, D)
        return gather_binarize(images_flat, idx, code, u, out)
    take.buffer = out
    return take
