"""model.train_step(x, eps, opt) against its definition: `loss_and_grads` then `opt.step`.

Oracle: the two-call API run side by side from the same model, the same batches and the same
ε. The comparison is exact (bit for bit): train_step is that sequence of operations with one
gradient check moved into Adam's pass, so any difference is a bug, not rounding.
The non-finite count of numpyvae.kernels.adam_step is checked against its py_func and against
NumPy's isfinite.
"""
import numpy as np
import pytest

import numpyvae as nv
from numpyvae import kernels
from numpyvae.adam import EXPONENT_BITS

CASES = [(b, d) for b in ("numpy", "numba") for d in ("float32", "float64")]


def batches(dtype, sizes=(64, 64, 37), L=1, seed=0):
    rng = np.random.default_rng(seed)
    for B in sizes:
        x = (rng.random((B, 784)) < 0.13).astype(dtype)                    # (B, D) binary
        eps = rng.standard_normal((L, B, 20) if L > 1 else (B, 20)).astype(dtype)
        yield x, eps


def two_call_run(backend, dtype, L=1, plant=None):
    model = nv.VAE(dtype=dtype, seed=3, backend=backend)
    opt = nv.Adam(model.num_params, dtype, lr=2e-3, backend=backend)
    gflat, grads = model.new_grads()
    losses = []
    for x, eps in batches(dtype, L=L):
        loss, _ = model.loss_and_grads(x, eps, out=grads)
        if plant is not None:
            plant(gflat)
        opt.step(model.flat, gflat)
        losses.append(loss)
    return losses, model.flat.copy(), opt


def train_step_run(backend, dtype, L=1):
    model = nv.VAE(dtype=dtype, seed=3, backend=backend)
    opt = nv.Adam(model.num_params, dtype, lr=2e-3, backend=backend)
    losses = [model.train_step(x, eps, opt) for x, eps in batches(dtype, L=L)]
    return losses, model.flat.copy(), opt


@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("L", [1, 3])
def test_train_step_leaves_the_bits_of_the_two_calls(backend, dtype, L):
    losses, flat, opt = train_step_run(backend, dtype, L)
    ref_losses, ref_flat, ref_opt = two_call_run(backend, dtype, L)
    assert all(isinstance(v, float) for v in losses)
    assert losses == ref_losses
    np.testing.assert_array_equal(flat, ref_flat)
    np.testing.assert_array_equal(opt.m, ref_opt.m)
    np.testing.assert_array_equal(opt.v, ref_opt.v)
    assert opt.t == ref_opt.t == 3


def test_planted_error_is_caught():
    """One gradient of 407,224 off by 0.1% at the reference run's second step (Adam does not
    see a change that every step repeats: it is scale-invariant): the exact comparison sees it."""
    steps = []

    def plant(gflat):
        steps.append(1)
        if len(steps) == 2:
            gflat[12345] *= 1.001
    _, flat, _ = train_step_run("numba", "float32")
    _, ref_flat, _ = two_call_run("numba", "float32", plant=plant)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(flat, ref_flat)


def poisoned_grads(dtype, P=1000, seed=1):
    """Gradients with ±inf and NaN planted among the extremes of the finite numbers."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(P).astype(dtype)
    info = np.finfo(dtype)
    g[[3, 4, 5, 6, 7]] = [info.max, -info.max, info.tiny / 4, -0.0, info.tiny]   # finite
    g[[10, 500, 999]] = [np.inf, -np.inf, np.nan]
    return g, 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_counts_nonfinite_gradients(dtype):
    """kernels.adam_step's count against its py_func and NumPy's isfinite; both Adam
    backends return it."""
    g, planted = poisoned_grads(dtype)
    assert g.size - np.count_nonzero(np.isfinite(g)) == planted
    bits = g.view(np.uint32 if dtype == np.float32 else np.uint64)
    f = dtype
    args = (np.zeros_like(g), g, bits, bits.dtype.type(EXPONENT_BITS[np.dtype(dtype)]),
            np.zeros_like(g), np.zeros_like(g), f(0.1), f(0.999), f(0.001), f(31.6), f(1e-8),
            f(1e-2))
    assert kernels.adam_step(*[a.copy() if isinstance(a, np.ndarray) else a
                               for a in args]) == planted
    assert kernels.adam_step.py_func(*args) == planted
    for backend in ("numpy", "numba"):
        assert nv.Adam(g.size, dtype, backend=backend).step(np.zeros_like(g), g) == planted
        healthy = np.nan_to_num(g, nan=0.0, posinf=1.0, neginf=-1.0)
        assert nv.Adam(g.size, dtype, backend=backend).step(np.zeros_like(g), healthy) == 0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_train_step_raises_on_a_nonfinite_gradient_or_loss(backend):
    model = nv.VAE(dtype="float32", seed=0, backend=backend)
    opt = nv.Adam(model.num_params, backend=backend)
    x, eps = next(batches("float32"))
    model.params["Decoder.FC_output.weight"][0, 0] = np.inf
    with pytest.raises(FloatingPointError, match="non-finite"):
        model.train_step(x, eps, opt)
    model = nv.VAE(dtype="float32", seed=0, backend=backend)
    eps = eps.copy()
    eps[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        model.train_step(x, eps, opt)
