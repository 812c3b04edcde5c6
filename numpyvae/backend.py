"""numpyvae's two paths, and the one place that chooses between them.

    numpy   the readable oracle (numpyvae/oracle/): network.forward + network.backward
            (iwae.forward + iwae.backward for the bound), adam.numpy_update, binarize.batch_taker, likelihood.log_weights. Allocates its
            temporaries every step.
    numba   the fast path (numpyvae/fast/), the same numbers up to rounding (float64 ≤ 1e-12,
            tests/math/test_backends.py): fused.FusedStep (fused.IWAEStep for the bound),
            adam.numba_update,
            binarize.batch_taker, fused.LogWeights — and, within it, the float32 or float64
            kernels (fused.numba_kernels) and, for the BLAS kernel numpy has, the forward
            products' layout (fused.few_rows). After its first step it allocates nothing.

DEFAULT is "numba", for the API (VAE, Adam) and the CLI alike: it is the path a user wants
to train and evaluate with, 1.5–2× faster than the NumPy one; the NumPy path is the oracle,
asked for by name (backend="numpy", --backend numpy), and the tests compare the two.

No other module branches on a backend's name; each asks here for the piece it needs. This
module sits above both paths and below the objects a user holds (numpyvae.model, .adam, .data,
.likelihood), which take their pieces from it.
"""
from .fast import adam as fast_adam
from .fast import binarize as fast_binarize
from .fast import fused
from .oracle import adam as oracle_adam
from .oracle import binarize as oracle_binarize
from .oracle import iwae
from .oracle import likelihood as oracle_likelihood
from .oracle import network

BACKENDS = ("numba", "numpy")
DEFAULT = "numba"


def check(backend):
    """`backend` when it names one of BACKENDS, else ValueError."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    return backend


def training_step(model, objective="elbo", estimator=None):
    """f(x (B, D), ε (L, B, Z), grads) -> the batch's loss sum, gradients written into grads
    (a dict keyed like model.params): −ELBO (objective "elbo"), or −L_K with the gradient
    `estimator` (objective "iwae"; numpyvae/oracle/iwae.py). The numba one is a
    fused.FusedStep, whose workspaces grow to the largest batch seen."""
    objective, estimator = iwae.check_objective(objective, estimator)
    if check(model.backend) == "numba":
        kern = fused.numba_kernels(model.dtype, model.activation)
        if objective == "iwae":
            return fused.IWAEStep(model, kern, fused.few_rows(model.dtype), estimator)
        return fused.FusedStep(model, kern, fused.few_rows(model.dtype))

    if objective == "iwae":
        def step(x, eps, grads):
            loss, cache = iwae.forward(model.params, x, eps, model.activation)
            iwae.backward(model.params, cache, grads, estimator)
            return loss
        return step

    def step(x, eps, grads):
        loss, cache = network.forward(model.params, x, eps, model.activation)
        network.backward(model.params, cache, grads)
        return loss
    return step


def adam_update(backend):
    """f(opt, params, grads): Adam's update of step opt.t (already counted), in place."""
    return fast_adam.numba_update if check(backend) == "numba" else oracle_adam.numpy_update


def likelihood_rows(model):
    """Rows (samples × images) per chunk of likelihood.log_likelihood when not given: the
    NumPy path holds a chunk's logits and their float64 temporaries (oracle ROWS), the
    numba one a block per worker (fused.CHUNK_ROWS). The draws are the same in any chunks;
    the estimate moves by rounding only (a block's float32 products round with its rows, and
    the running log-sum-exp adds the chunks in another order)."""
    return fused.CHUNK_ROWS if check(model.backend) == "numba" else oracle_likelihood.ROWS


def log_weights(model, x, rows, workers=1):
    """f(model, x, ε (S, B, Z)) -> the log importance weights (S, B), float64, for the fixed
    images x (B, D), S·B ≤ rows samples per call; the numba one shares each call among
    `workers` threads (the NumPy one computes in this thread)."""
    if check(model.backend) == "numba":
        return fused.LogWeights(model, x, rows,
                                fused.numba_kernels(model.dtype, model.activation), workers)

    def weights(model, x, eps):
        return oracle_likelihood.log_weights(model.params, x, eps, model.activation)
    return weights


def batch_taker(backend, images_flat, batch_size, mode, rng, dtype):
    """take(idx) -> the binarized batch (b, D) of images_flat[idx], a view of one reused buffer,
    `take.buffer`. Both paths draw the same uniforms from `rng` (for mode "dynamic"), so they
    see the same batches; the training CLI and data.Batches both take theirs here."""
    path = fast_binarize if check(backend) == "numba" else oracle_binarize
    return path.batch_taker(images_flat, batch_size, mode, rng, dtype)
