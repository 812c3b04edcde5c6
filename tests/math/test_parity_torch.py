"""Oracle: PyTorch autograd on the reference Model (reference/model.py), same params, x and ε.

Tolerances, stated once:
- float64: 1e-10, by rel_err = max|Δ| / max|ref| per tensor. Both sides do the same
  arithmetic in different summation orders, so they differ by a few ulps (~1e-15 measured);
  1e-10 leaves room for long reductions yet rejects a 1e-6 error in one entry (see the
  planted-error test).
- float32: 1e-5. The unit roundoff is 6e-8 and every gradient is a reduction over up to
  B·L = 128·L rows or 784 inputs, summed in different orders by OpenBLAS and ATen; the
  worst measured at the notebook's sizes is ≈ 7e-7, and 1e-5 ≈ 170 roundoffs keeps margin
  for other BLAS builds while still catching any wrong term (those are O(1) relative; a
  planted 1e-4 error in any one entry of any gradient is refused, see below).

Float32 through LeakyReLU is compared on the batch less the images with a pre-activation
within a few roundoffs of the kink at 0 (checks.away_from_kinks, which says why): there the
branch a float32 product lands on depends on the BLAS kernel, not on the code under test.
That decision is made in float64, so it is the same on every CPU; the float64 comparisons
use whole batches (their roundoff is 2²⁹ times smaller, and the kink itself is checked at an
exact 0 by test_leaky_relu_gradient_at_zero_matches_torch).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numpyvae as nv
from checks import assert_all_close, away_from_kinks, kink_rows, rel_err
from torch_oracle import ours_intermediates, torch_loss_and_grads

TOL64 = 1e-10
TOL32 = 1e-5


def make_batch(rng, batch, x_dim, latent, L, grey, dtype):
    x = rng.random((batch, x_dim))
    if not grey:
        x = np.round(x)
    eps = rng.standard_normal((L, batch, latent) if L > 1 else (batch, latent))
    return x.astype(dtype), eps.astype(dtype)


def check_parity(model, x, eps, tol):
    if x.dtype == np.float32 and model.activation == "leaky_relu":
        x, eps = away_from_kinks(model.params, x, eps)
    loss, cache = model.forward(x, eps)
    grads = model.backward(cache)
    t_loss, t_grads, t_inter, (t_recon, t_kl, _) = torch_loss_and_grads(model.params, x, eps,
                                                                        model.activation)
    assert abs(loss - t_loss) <= tol * abs(t_loss), (loss, t_loss)
    assert abs(cache["recon"] - t_recon) <= tol * abs(t_recon)
    # The KL sums terms that cancel near σ = 1 (σ² − 1 − log σ² ≈ ½ (log σ²)²), so its rounding
    # is relative to the size of those terms, not to their sum, which can be ~1e-5 of them.
    kl_terms = 0.5 * np.sum(np.square(cache["mu"]) + np.exp(cache["logvar"]) + 1
                            + np.abs(cache["logvar"]))
    assert abs(cache["kl"] - t_kl) <= tol * max(abs(t_kl), kl_terms), (cache["kl"], t_kl)
    inter = ours_intermediates(cache)
    inter["z"] = inter["z"].reshape(t_inter["z"].shape)
    assert_all_close(inter, t_inter, tol, "intermediates")
    assert_all_close(grads, t_grads, tol, "gradients")


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
@pytest.mark.parametrize("L", [1, 3])
def test_notebook_sizes_float64(L, activation):
    model = nv.VAE(784, 200, 20, dtype="float64", seed=0, activation=activation)
    x, eps = make_batch(np.random.default_rng(L), 128, 784, 20, L, False, np.float64)
    check_parity(model, x, eps, TOL64)


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
@pytest.mark.parametrize("L", [1, 2])
def test_notebook_sizes_float32(L, activation):
    model = nv.VAE(784, 200, 20, dtype="float32", seed=0, activation=activation)
    x, eps = make_batch(np.random.default_rng(10 + L), 128, 784, 20, L, False, np.float32)
    check_parity(model, x, eps, TOL32)


def test_burda2015_sizes_float64():
    """The preset's network: 784-200-50, tanh, Glorot initialisation, batch 20."""
    model = nv.VAE(784, 200, 50, dtype="float64", seed=0, activation="tanh", init="glorot")
    x, eps = make_batch(np.random.default_rng(5), 20, 784, 50, 1, False, np.float64)
    check_parity(model, x, eps, TOL64)


@given(batch=st.integers(1, 300), x_dim=st.integers(1, 50), hidden=st.integers(1, 64),
       latent=st.integers(1, 32), L=st.integers(1, 4), grey=st.booleans(),
       seed=st.integers(0, 2**32 - 1), activation=st.sampled_from(["leaky_relu", "tanh"]),
       init=st.sampled_from(["torch", "glorot"]))
def test_many_shapes_float64(batch, x_dim, hidden, latent, L, grey, seed, activation, init):
    model = nv.VAE(x_dim, hidden, latent, dtype="float64", seed=seed, activation=activation,
                   init=init)
    x, eps = make_batch(np.random.default_rng(seed), batch, x_dim, latent, L, grey, np.float64)
    check_parity(model, x, eps, TOL64)


def test_extremes_float64():
    """Logits of ±1e4 and log σ² of ±50: finite, and equal to Torch's BCE-with-logits loss."""
    model = nv.VAE(784, 200, 20, dtype="float64", seed=0)
    p = model.params
    p["Decoder.FC_output.bias"][...] = np.where(np.arange(784) % 2, 1e4, -1e4)
    p["Decoder.FC_output.weight"][...] *= 1e-3
    p["Encoder.FC_std.bias"][...] = np.where(np.arange(20) % 2, 50.0, -50.0)
    p["Encoder.FC_std.weight"][...] = 0.0
    x, eps = make_batch(np.random.default_rng(0), 64, 784, 20, 1, False, np.float64)
    loss, cache = model.forward(x, eps)
    assert np.abs(cache["logits"]).max() > 5e3 and np.isclose(np.abs(cache["logvar"]).max(), 50)
    grads = model.backward(cache)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    check_parity(model, x, eps, TOL64)


def test_extremes_float32_finite():
    model = nv.VAE(784, 200, 20, dtype="float32", seed=0)
    model.params["Decoder.FC_output.bias"][...] = 1e4
    model.params["Encoder.FC_std.bias"][...] = 50.0
    x, eps = make_batch(np.random.default_rng(0), 32, 784, 20, 1, False, np.float32)
    loss, grads = model.loss_and_grads(x, eps)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_planted_error_is_rejected(activation):
    """The check itself: one gradient entry off by 1e-6 relative must fail it."""
    model = nv.VAE(784, 200, 20, dtype="float64", seed=0, activation=activation)
    x, eps = make_batch(np.random.default_rng(0), 128, 784, 20, 1, False, np.float64)
    _, grads = model.loss_and_grads(x, eps)
    _, t_grads, _, _ = torch_loss_and_grads(model.params, x, eps, activation)
    assert_all_close(grads, t_grads, TOL64)
    for name in ("Encoder.FC_enc1.weight", "Decoder.FC_output.bias"):
        bad = {k: v.copy() for k, v in grads.items()}
        i = np.unravel_index(np.argmax(np.abs(bad[name])), bad[name].shape)
        bad[name][i] *= 1 + 1e-6
        assert rel_err(bad[name], t_grads[name]) > TOL64
        with pytest.raises(AssertionError, match=name.replace(".", r"\.")):
            assert_all_close(bad, t_grads, TOL64)


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_float32_planted_error_is_rejected(activation):
    """The float32 check keeps its teeth: one entry of any of the 14 gradients off by 1e-4 of
    that tensor's largest entry (10× the tolerance) fails it, naming the tensor."""
    model = nv.VAE(784, 200, 20, dtype="float32", seed=0, activation=activation,
                   backend="numpy")
    x, eps = make_batch(np.random.default_rng(11), 128, 784, 20, 1, False, np.float32)
    if activation == "leaky_relu":
        x, eps = away_from_kinks(model.params, x, eps)
    _, grads = model.loss_and_grads(x, eps)
    _, t_grads, _, _ = torch_loss_and_grads(model.params, x, eps, activation)
    assert_all_close(grads, t_grads, TOL32)
    rng = np.random.default_rng(0)
    for name in grads:
        bad = {k: v.copy() for k, v in grads.items()}
        i = tuple(rng.integers(n) for n in bad[name].shape)        # any entry, not the largest
        bad[name][i] += 1e-4 * np.abs(t_grads[name]).max()
        with pytest.raises(AssertionError, match=name.replace(".", r"\.") + ": rel err"):
            assert_all_close(bad, t_grads, TOL32)


@pytest.mark.parametrize("layer", ["Encoder.FC_enc1", "Encoder.FC_enc2", "Decoder.FC_dec1",
                                   "Decoder.FC_dec2"])
def test_kink_filter_finds_a_pre_activation_planted_at_the_kink(layer):
    """checks.kink_rows, the filter the float32 comparisons rely on, sees a pre-activation put
    within rounding of 0 in any of the four LeakyReLU layers, in the image where it was put."""
    model = nv.VAE(784, 200, 20, dtype="float32", seed=0)
    x, eps = make_batch(np.random.default_rng(3), 64, 784, 20, 2, False, np.float32)
    i, j = np.flatnonzero(~kink_rows(model.params, x, eps))[7], 11          # image, unit
    exact = nv.VAE(784, 200, 20, dtype="float64")
    exact.flat[...] = model.flat
    _, cache = exact.forward(x.astype(np.float64), eps.astype(np.float64))
    a = {"Encoder.FC_enc1": cache["enc"][0], "Encoder.FC_enc2": cache["enc"][2],
         "Decoder.FC_dec1": cache["dec"][0], "Decoder.FC_dec2": cache["dec"][2]}[layer]
    row = i if layer.startswith("Encoder") else 64 + i                      # sample l = 1
    model.params[layer + ".bias"][j] -= a[row, j]                           # a[row, j] ≈ 0
    assert kink_rows(model.params, x, eps)[i]


def test_leaky_relu_gradient_at_zero_matches_torch():
    """A pre-activation of exactly 0: Torch's LeakyReLU backward uses the slope there."""
    model = nv.VAE(4, 3, 2, dtype="float64", seed=0)
    model.params["Encoder.FC_enc1.weight"][...] = 0.0
    model.params["Encoder.FC_enc1.bias"][...] = 0.0       # a1 == 0 exactly
    model.params["Decoder.FC_dec1.weight"][0] = 0.0
    model.params["Decoder.FC_dec1.bias"][0] = 0.0         # c1[:, 0] == 0 exactly
    x, eps = make_batch(np.random.default_rng(0), 5, 4, 2, 1, False, np.float64)
    check_parity(model, x, eps, TOL64)


def test_tanh_derivative_mistaken_for_leaky_relus_is_caught():
    """Planted error in the activation itself: a tanh network differentiated as if its units
    were LeakyReLU (the backward of the wrong activation) is far outside the tolerance."""
    model = nv.VAE(30, 16, 4, dtype="float64", seed=1, activation="tanh")
    x, eps = make_batch(np.random.default_rng(1), 12, 30, 4, 1, False, np.float64)
    _, cache = model.forward(x, eps)
    cache["activation"] = "leaky_relu"
    wrong = model.backward(cache)
    _, t_grads, _, _ = torch_loss_and_grads(model.params, x, eps, "tanh")
    with pytest.raises(AssertionError, match="FC_enc1"):
        assert_all_close(wrong, t_grads, TOL64)
