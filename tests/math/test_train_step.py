"""model.train_step(x, eps, opt) against its definition: `loss_and_grads` then `opt.step`.

Oracle: the two-call API run side by side from the same model, the same batches and the same
ε. The comparison is exact (bit for bit): train_step is that sequence of operations, so any
difference is a bug, not rounding. And the known values train_step's error handling rests on:
a non-finite gradient turns its parameter NaN, and the next loss is NaN.
"""
import numpy as np
import pytest

import numpyvae as nv

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


@pytest.mark.filterwarnings("ignore:invalid value encountered")   # NumPy's Adam: inf/inf
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_nonfinite_gradient_makes_its_parameter_and_the_next_loss_nan(backend):
    """What train_step relies on instead of a pass over the gradients: ±inf or NaN in one
    gradient entry (each kind, in the first layer's weight where the input pixel is 0, the
    place where a NaN could hide) turns that parameter NaN, and the next step raises."""
    for bad in (np.inf, -np.inf, np.nan):
        model = nv.VAE(dtype="float32", seed=0, backend=backend)
        opt = nv.Adam(model.num_params, backend=backend)
        x, eps = next(batches("float32"))
        x[:, 7] = 0                                            # pixel 7 is off in every image
        gflat, grads = model.new_grads()
        model.loss_and_grads(x, eps, out=grads)
        grads["Encoder.FC_enc1.weight"][3, 7] = bad
        opt.step(model.flat, gflat)
        assert np.isnan(model.params["Encoder.FC_enc1.weight"][3, 7])
        assert np.count_nonzero(~np.isfinite(model.flat)) == 1            # that one alone
        with pytest.raises(FloatingPointError, match="non-finite loss"):
            model.train_step(x, eps, opt)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_train_step_raises_on_a_nonfinite_loss(backend):
    model = nv.VAE(dtype="float32", seed=0, backend=backend)
    opt = nv.Adam(model.num_params, backend=backend)
    x, eps = next(batches("float32"))
    eps = eps.copy()
    eps[0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        model.train_step(x, eps, opt)
