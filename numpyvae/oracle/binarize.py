"""Binarization and batches in NumPy: uint8 pixels into the model's inputs.

Binarization (`mode`, one of BINARIZE_MODES) turns uint8 pixels x into the model's inputs:
    "threshold"  round(x / 255), the notebook's: np.round rounds half to even, but x / 255 is
                 never exactly ½ for an integer x, so this is exactly x ≥ 128
    "dynamic"    a fresh Bernoulli(x / 255) draw every time a batch is taken (Burda et al. 2015)
    "none"       the grey levels x / 255 in [0, 1]

Batching keeps the images as uint8 (N, 784) and converts one batch at a time into a reused float
buffer; `epoch_order`, `num_batches` and `batch_into` are the primitives a resumable training
loop needs, `batch_taker` the readable one of the two batch takers (the numba one is
numpyvae/fast/fused.py's, the same numbers; numpyvae/backend.py chooses).
"""
import numpy as np

BINARIZE_MODES = ("threshold", "dynamic", "none")


def check_binarize_mode(mode):
    """`mode` if it is one of BINARIZE_MODES, else ValueError saying what each one means."""
    if mode not in BINARIZE_MODES:
        raise ValueError(f"binarization mode {mode!r} is not one of {', '.join(BINARIZE_MODES)}: "
                         f"'threshold' is round(x/255) (the notebook's), 'dynamic' a fresh "
                         f"Bernoulli(x/255) draw per batch (Burda et al. 2015), 'none' the grey "
                         f"levels x/255.")
    return mode


def binarize_into(pixels, mode, rng, out):
    """uint8 pixels (B, D) -> out (B, D) float32/float64, in place; returns out.

    rng (a numpy.random.Generator) is used only by "dynamic", which draws B·D uniforms with
    one rng.random call in out's dtype. Only numpy's fixed-size ufunc buffers are allocated.
    """
    if mode == "threshold":
        # round(x/255) ∈ {0, 1}; x/255 = ½ has no integer solution, so round-half-even never
        # matters and this is x ≥ 128 exactly.
        np.greater_equal(pixels, 128, out=out)
    elif mode == "dynamic":
        # x̃ ~ Bernoulli(x/255) (Burda et al. 2015, §5): u ~ U[0, 1), x̃ = [255·u < x], which is
        # [u < x/255] up to one rounding of 255·u.
        rng.random(out=out, dtype=out.dtype)
        np.multiply(out, 255, out=out)
        np.less(out, pixels, out=out)
    elif mode == "none":
        np.true_divide(pixels, 255, out=out, dtype=out.dtype)       # as torch's x.float() / 255
    else:
        check_binarize_mode(mode)
    return out


def hold_out(images, n):
    """The last `n` images held out: (the first len − n, the last n). Burda et al. (2015) train on
    the first 59,600 MNIST training images and validate on the last 400 (`--holdout 400`)."""
    if not 0 <= n < len(images):
        raise ValueError(f"cannot hold out {n} of {len(images)} images and keep one to train on")
    cut = len(images) - n
    return images[:cut], images[cut:]


def epoch_order(n, rng):
    """The order of one epoch: an int64 permutation of range(n), one rng.permutation(n) call."""
    return rng.permutation(n).astype(np.int64, copy=False)


def num_batches(n, batch_size):
    """Batches per epoch, the final partial one included: ceil(n / batch_size)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return -(-n // batch_size)


def batch_into(images_u8_flat, idx, mode, rng, out, scratch=None):
    """Binarize images_u8_flat[idx] into out[:len(idx)] and return that view.

    images_u8_flat: uint8 (N, D), D = 784. idx: integer indices (B,). out: float32 or float64
    (≥ B, D), C-contiguous, reused between calls — the returned view is overwritten by the next
    call. rng: used only by "dynamic". scratch: optional uint8 (≥ B, D) buffer for the gather;
    with it nothing of size B·D is allocated, without it the gather allocates one uint8 (B, D).
    """
    idx = np.asarray(idx)
    B, (N, D) = len(idx), images_u8_flat.shape
    if images_u8_flat.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images_u8_flat.dtype}")
    if out.dtype not in (np.float32, np.float64) or out.ndim != 2 or out.shape[1] != D \
            or out.shape[0] < B or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 or float64 array of at least "
                         f"({B}, {D}), got {out.dtype} {out.shape}")
    if mode == "dynamic" and not isinstance(rng, np.random.Generator):
        raise ValueError(f"mode 'dynamic' needs a numpy.random.Generator, got {type(rng).__name__}")
    if B and (idx.min() < 0 or idx.max() >= N):
        raise IndexError(f"batch indices span {idx.min()} … {idx.max()}, expected 0 … {N - 1}")
    if scratch is None:
        pixels = images_u8_flat[idx]                                 # (B, D) uint8
    else:
        pixels = scratch[:B]                                         # (B, D) uint8
        np.take(images_u8_flat, idx, axis=0, out=pixels, mode="clip")  # range checked above
    return binarize_into(pixels, check_binarize_mode(mode), rng, out[:B])


def batch_taker(images_flat, batch_size, mode, rng, dtype):
    """take(idx) -> the binarized batch (b, D) of images_flat[idx] (uint8 (N, D)), a view of
    one reused buffer, `take.buffer` (min(batch_size, N), D) of `dtype`. "dynamic" draws its
    uniforms from `rng` as binarize_into does."""
    B, D = min(batch_size, len(images_flat)), images_flat.shape[1]     # no batch is larger
    out = np.empty((B, D), dtype)                                     # (B, D), reused
    scratch = np.empty((B, D), np.uint8)                              # (B, D) gathered pixels

    def take(idx):
        return batch_into(images_flat, idx, mode, rng, out, scratch=scratch)
    take.buffer = out
    return take
