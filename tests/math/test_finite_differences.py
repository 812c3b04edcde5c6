"""Oracle: central finite differences of the loss in float64 — independent of Torch.

Fourth-order central differences, f'(p) ≈ [−f(p+2h) + 8f(p+h) − 8f(p−h) + f(p−2h)] / 12h,
with h = 1e-4: truncation O(h⁴) ≈ 1e-16 and roundoff ≈ u·|f|/h ≈ 1e-11 for |f| ≈ 10, so the
tolerance is 1e-7 by rel_err per tensor — tight enough that a 1e-6 error in one entry fails
(the planted-error test), and far above what the differences themselves get wrong. The nets
are small so every entry of every parameter is checked; fixed seeds keep every pre-activation
well away from LeakyReLU's kink at 0 (which a step of h must not cross).
"""
import numpy as np
import pytest

import numpyvae as nv
from checks import assert_all_close, rel_err

TOL = 1e-7
H = 1e-4


def numeric_grads(model, x, eps, loss=None):
    """Every entry of every parameter's gradient of loss(x, eps) (default: model.forward's
    −ELBO) by the fourth-order stencil."""
    loss = loss or (lambda x, eps: model.forward(x, eps)[0])
    grads = {}
    for name, p in model.params.items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            f = []
            for step in (2 * H, H, -H, -2 * H):
                p[i] = old + step
                f.append(loss(x, eps))
            p[i] = old
            g[i] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * H)
        grads[name] = g
    return grads


def small_case(seed, L, grey, activation="leaky_relu"):
    rng = np.random.default_rng(seed)
    model = nv.VAE(x_dim=7, hidden_dim=5, latent_dim=3, dtype="float64", seed=seed,
                   activation=activation, backend="numpy")
    x = rng.random((4, 7))
    if not grey:
        x = np.round(x)
    eps = rng.standard_normal((L, 4, 3))
    return model, x, eps


@pytest.mark.parametrize("seed,L,grey", [(0, 1, False), (1, 2, False), (2, 3, True)])
def test_gradients_match_finite_differences(seed, L, grey):
    model, x, eps = small_case(seed, L, grey)
    # A step of ±2h in one weight moves a pre-activation by at most 2h·max|input|; none may lie
    # that close (with a factor 2 of margin) to LeakyReLU's kink, or the stencil would cross it.
    _, cache = model.forward(x, eps)
    a1, _, a2, _ = cache["enc"]
    c1, _, c2, _ = cache["dec"]
    inputs = max(np.abs(v).max() for v in (x, *cache["enc"][1::2], cache["z"], *cache["dec"][1::2]))
    kink = min(np.abs(a).min() for a in (a1, a2, c1, c2))
    assert kink > 2 * (2 * H) * max(inputs, 1.0), (kink, inputs)
    _, grads = model.loss_and_grads(x, eps)
    assert_all_close(grads, numeric_grads(model, x, eps), TOL, "finite differences")


@pytest.mark.parametrize("seed,L,grey", [(0, 1, False), (3, 2, True)])
def test_tanh_gradients_match_finite_differences(seed, L, grey):
    """tanh is smooth, so no pre-activation needs to keep away from a kink."""
    model, x, eps = small_case(seed, L, grey, activation="tanh")
    _, grads = model.loss_and_grads(x, eps)
    assert_all_close(grads, numeric_grads(model, x, eps), TOL, "finite differences, tanh")


def test_planted_error_is_rejected():
    model, x, eps = small_case(0, 1, False)
    _, grads = model.loss_and_grads(x, eps)
    num = numeric_grads(model, x, eps)
    name = "Encoder.FC_std.weight"
    i = np.unravel_index(np.argmax(np.abs(grads[name])), grads[name].shape)
    grads[name][i] *= 1 + 1e-6
    assert rel_err(grads[name], num[name]) > TOL
    with pytest.raises(AssertionError, match="FC_std"):
        assert_all_close(grads, num, TOL)
