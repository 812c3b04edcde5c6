"""numpyvae's two paths, and the one place that chooses between them.

    numpy   the readable oracle: model.forward + model.backward, adam.numpy_update,
            data.batch_into, likelihood.log_weights. Allocates its temporaries every step.
    numba   the fast path, the same numbers up to rounding (float64 ≤ 1e-12,
            tests/math/test_backends.py): fused.FusedStep, kernels.adam_step,
            kernels.gather_binarize, fused.LogWeights — and, within it, the float32 or
            float64 kernels (`numba_kernels`) and, for the BLAS kernel numpy has, the
            forward products' layout (`few_rows`). After its first step it allocates nothing.

DEFAULT is "numba", for the API (VAE, Adam) and the CLI alike: it is the path a user wants
to train and evaluate with, 1.5–2× faster than the NumPy one; the NumPy path is the oracle,
asked for by name (backend="numpy", --backend numpy), and the tests compare the two.

No other module branches on a backend's name; each asks here for the piece it needs.
"""
from types import SimpleNamespace

import numpy as np

from . import threads

BACKENDS = ("numba", "numpy")
DEFAULT = "numba"


def check(backend):
    """`backend` when it names one of BACKENDS, else ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    return backend


def numba_kernels(dtype, activation):
    """The numba path's kernels for arrays of `dtype` and the hidden `activation`:
        act(a, b)                a ← f(a + b), in place
        act_backward(d, h, db)   d ← d ⊙ f'(·) from the layer's output h; db = Σ_rows d
        bernoulli_logits(ℓ, b, x, 1/L, db, colsum, row)   BCE sum; ℓ ← dℓ in place
        loglik_rows(ℓ, b, x, out, first, row)   out[r] = log p(x|z) of decoder row first + r
    The float32 kernels use float32 polynomials for exp/log1p/tanh (numpyvae/kernels.py)."""
    from . import kernels
    from .activations import SLOPE
    dtype = np.dtype(dtype)
    f32 = dtype == np.float32
    if activation == "tanh":
        act = kernels.bias_tanh_f32 if f32 else kernels.bias_tanh
        act_backward = kernels.tanh_backward_bias
    else:
        slope = dtype.type(SLOPE)

        def act(a, b):
            kernels.bias_leaky_relu(a, b, slope)

        def act_backward(d, h, db):
            kernels.leaky_relu_backward_bias(d, h, slope, db)
    if f32:
        bernoulli_logits = kernels.bernoulli_logits_f32
        loglik_rows = kernels.bernoulli_loglik_rows_f32
    else:
        bernoulli_logits = kernels.bernoulli_logits

        def loglik_rows(logits, b, x, out, first, row):
            kernels.bernoulli_loglik_rows(logits, b, x, out, first)
    return SimpleNamespace(act=act, act_backward=act_backward, bernoulli_logits=bernoulli_logits,
                           loglik_rows=loglik_rows)


# Where numpy's float32 product a·Wᵀ, with W's `.T` view, runs 1.25–1.8× slower than W·aᵀ when a
# has 16–32 rows, with the same bits: OpenBLAS's AVX-512 kernels (threadpoolctl's
# `architecture`; on Zen 4 0.3.27 calls its kernel Cooperlake, 0.3.29–0.3.31 SkylakeX), from
# 0.3.27 on (measured 0.3.27, 0.3.29, 0.3.30, 0.3.31; hidden 37–1000, 1–128 rows, 1 and 2
# threads). At 64 rows it depends on the shape and the threads (0.85–1.2×), at 128 0.79–1.06×,
# and from 256 the usual way is faster. The rest keep the usual way: 0.3.21 (numpy 1.24) is
# slower the other way on two threads (0.61–0.88×), the AVX2 kernels (Haswell, Zen) are about
# as fast the usual way and round differently the other, float64 is slower the other way (a
# batch-16 step 0.91×), and OpenBLAS's SapphireRapids kernel is not measured. All on a Zen 4,
# 1 and 2 threads; not on Intel's AVX-512 CPUs (docs/speed.md).
FEW_ROWS_KERNELS = ("SkylakeX", "Cooperlake")
FEW_ROWS_SINCE = (0, 3, 27)
FEW_ROWS = 32


def _version(text):
    """'0.3.31.188.0' -> (0, 3, 31); None or unreadable -> ()."""
    parts = []
    for piece in str(text or "").split(".")[:3]:
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def few_rows(dtype):
    """The most rows a forward product of the numba step runs with as W·aᵀ (fused.FusedStep):
    FEW_ROWS for float32 where numpy's BLAS is OpenBLAS ≥ FEW_ROWS_SINCE with one of
    FEW_ROWS_KERNELS (in any case: builds for one CPU say "SKYLAKEX"), else 0 (never)."""
    if np.dtype(dtype) != np.float32:
        return 0
    names = {k.lower() for k in FEW_ROWS_KERNELS}
    libs = threads.numpy_blas()
    fits = libs and all(lib.internal_api == "openblas" and _version(lib.version) >= FEW_ROWS_SINCE
                        and str(getattr(lib, "architecture", None)).lower() in names
                        for lib in libs)
    return FEW_ROWS if fits else 0


def training_step(model):
    """f(x (B, D), ε (L, B, Z), grads) -> the batch's −ELBO sum, gradients written into grads
    (a dict keyed like model.params). The numba one is a fused.FusedStep, whose workspaces
    grow to the largest batch seen."""
    if model.backend == "numba":
        from .fused import FusedStep
        return FusedStep(model, numba_kernels(model.dtype, model.activation),
                         few_rows(model.dtype))
    from .model import backward, forward

    def step(x, eps, grads):
        loss, cache = forward(model.params, x, eps, model.activation)
        backward(model.params, cache, grads)
        return loss
    return step


def flush_below(dtype):
    """The numba Adam's flush-to-zero bound for its moments (kernels.adam_step): float32's
    smallest normal number; 0 for float64, whose moments are never flushed."""
    return np.finfo(np.float32).tiny if dtype == np.float32 else dtype.type(0)


def adam_update(backend):
    """f(opt, params, grads): Adam's update of step opt.t (already counted), in place."""
    if check(backend) == "numba":
        from .kernels import adam_step

        def update(opt, params, grads):
            (b1, b2), f = opt.betas, opt.m.dtype.type
            adam_step(params, grads, opt.m, opt.v, f(1 - b1), f(b2), f(1 - b2),
                      f(1 / np.sqrt(1 - b2 ** opt.t)), f(opt.eps),
                      f(opt.lr / (1 - b1 ** opt.t)), flush_below(opt.m.dtype))
        return update
    from .adam import numpy_update
    return numpy_update


def likelihood_rows(model):
    """Rows (samples × images) per chunk of likelihood.log_likelihood when not given: the
    NumPy path holds a chunk's logits and their float64 temporaries (likelihood.ROWS), the
    numba one a block per worker (fused.CHUNK_ROWS). The draws are the same in any chunks;
    the estimate moves by rounding only (a block's float32 products round with its rows, and
    the running log-sum-exp adds the chunks in another order)."""
    if model.backend == "numba":
        from .fused import CHUNK_ROWS
        return CHUNK_ROWS
    from .likelihood import ROWS
    return ROWS


def log_weights(model, x, rows, workers=1):
    """f(model, x, ε (S, B, Z)) -> the log importance weights (S, B) of likelihood.py, for the
    fixed images x (B, D), S·B ≤ rows samples per call; the numba one shares each call among
    `workers` threads (the NumPy one computes in this thread)."""
    if model.backend == "numba":
        from .fused import LogWeights
        return LogWeights(model, x, rows, numba_kernels(model.dtype, model.activation), workers)
    from .likelihood import log_weights
    return log_weights


def batch_taker(backend, images_flat, batch_size, mode, rng, dtype):
    """take(idx) -> the binarized batch (b, D) of images_flat[idx], a view of one reused buffer,
    `take.buffer`. Both paths draw the same uniforms from `rng` (for mode "dynamic"), so they
    see the same batches; the training CLI and data.Batches both take theirs here."""
    B, D = min(batch_size, len(images_flat)), images_flat.shape[1]     # no batch is larger
    out = np.empty((B, D), dtype)                                     # (B, D), reused
    if check(backend) == "numba":
        from .kernels import BINARIZE_CODES, gather_binarize
        code = BINARIZE_CODES[mode]
        uniforms = np.empty((B if mode == "dynamic" else 0, D), dtype)    # (B, D) or (0, D)

        def take(idx):
            u = uniforms
            if mode == "dynamic":
                u = rng.random(out=uniforms[:len(idx)], dtype=dtype)    # (b, D)
            return gather_binarize(images_flat, idx, code, u, out)
        take.buffer = out
        return take
    from .data import batch_into
    scratch = np.empty((B, D), np.uint8)                              # (B, D) gathered pixels

    def take(idx):
        return batch_into(images_flat, idx, mode, rng, out, scratch=scratch)
    take.buffer = out
    return take


def warm_up(model, samples, mode, images_flat):
    """Compile (or load from numba's on-disk cache) the kernels a training step of `model`
    uses, before the clock starts, so that epoch_seconds measures training alone. Numba
    specialises on dtypes and layouts, not sizes, so a throwaway one-image model of the same
    kind compiles them all; the real model, its workspaces and every Generator are untouched.
    Nothing to do on the NumPy path."""
    if model.backend != "numba":
        return
    from .adam import Adam
    from .model import VAE
    D, Z, L, dtype = model.x_dim, model.latent_dim, samples, model.dtype
    tiny = VAE(D, 1, Z, dtype=dtype, backend="numba", activation=model.activation)
    x = np.zeros((1, D), dtype)                                           # (1, D)
    eps = np.zeros((L, 1, Z) if L > 1 else (1, Z), dtype)
    gflat, grads = tiny.new_grads()
    tiny.loss_and_grads(x, eps, out=grads)
    Adam(tiny.num_params, dtype, backend="numba").step(tiny.flat, gflat)
    batch_taker("numba", images_flat, 1, mode, np.random.default_rng(0), dtype)(
        np.zeros(1, np.int64))
