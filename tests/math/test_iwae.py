"""Training on the importance-weighted bound (numpyvae/oracle/iwae.py): the loss −L_K and the
standard, STL and DReG gradients.

Oracles:
(1) Torch autograd in float64 on the reference Model (reference/model.py, `neg_iwae`: the
    same bound, `detach` where each estimator says), every tensor within TOL_TORCH;
(2) central finite differences of the loss, for the standard estimator — the one that is the
    loss's own gradient — within TOL_FD (test_finite_differences.py's stencil and reasons);
(3) identities: at K = 1 the standard gradient is the ELBO's with a Monte-Carlo KL (Torch
    autograd of that ELBO), dreg equals stl; the decoder's gradient is the same for the three;
(4) expectations (Tucker et al. 2019): over ε, dreg's mean gradient is the standard one's (both
    are unbiased for ∇E[L_K]) — Monte Carlo, within Z_MAX standard errors; stl is biased for
    K > 1, and that bias is the planted error this check must see.
Each has a planted error that it catches.
"""
import numpy as np
import pytest
import torch

import numpyvae as nv
from checks import assert_all_close
from numpyvae.oracle import iwae
from reference.model import ESTIMATORS, from_params, neg_iwae
from test_finite_differences import numeric_grads

# float64 on both sides: the two compute the same sums in other orders (softmax, logsumexp,
# log q from z or from ε); measured ≤ 9.1e-15 (K 1–50, both activations, 16×30-20-5). 1e-10,
# the issue's, leaves room for larger nets and sits far below what a wrong term moves (DReG
# weighted as STL, planted below).
TOL_TORCH = 1e-10
TOL_FD = 1e-7                # test_finite_differences.py: truncation ≈ 1e-16, roundoff ≈ 1e-11
BACKENDS = ("numpy", "numba")


def case(seed=0, K=5, B=4, D=9, H_=6, Z=3, activation="tanh", backend="numpy"):
    rng = np.random.default_rng(seed)
    model = nv.VAE(D, H_, Z, dtype="float64", seed=seed, activation=activation, backend=backend)
    x = np.round(rng.random((B, D)))
    eps = rng.standard_normal((K, B, Z))
    return model, x, eps


def torch_grads(model, x, eps, estimator):
    """Torch's loss and 14 gradients, float64 numpy, for the reference Model on model.params."""
    tm = from_params(model.params, dtype=torch.float64, activation=model.activation)
    loss = neg_iwae(tm, torch.as_tensor(x), torch.as_tensor(eps), estimator)
    return loss.item(), {k: p.grad.numpy() for k, p in tm.named_parameters()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("activation,K", [("tanh", 5), ("leaky_relu", 3), ("tanh", 1)])
def test_each_estimator_matches_torch_autograd(backend, estimator, activation, K):
    model, x, eps = case(seed=K, K=K, activation=activation, backend=backend)
    loss, grads = model.loss_and_grads(x, eps, objective="iwae", estimator=estimator)
    ref_loss, ref = torch_grads(model, x, eps, estimator)
    assert abs(loss - ref_loss) <= TOL_TORCH * abs(ref_loss)
    assert_all_close(grads, ref, TOL_TORCH, f"iwae/{estimator} vs Torch autograd")


def test_torch_check_catches_a_planted_weighting(monkeypatch):
    """Planted: DReG's encoder path weighted by w̃ rather than w̃² (that is STL's)."""
    model, x, eps = case(K=5)
    _, ref = torch_grads(model, x, eps, "dreg")
    _, stl = model.loss_and_grads(x, eps, objective="iwae", estimator="stl")
    with pytest.raises(AssertionError, match="Encoder"):
        assert_all_close(stl, ref, TOL_TORCH, "planted")


def test_the_loss_matches_finite_differences():
    """tanh has no kink, so no stencil crosses one."""
    model, x, eps = case(seed=3, K=4, B=3, D=7, H_=5, Z=3)
    _, grads = model.loss_and_grads(x, eps, objective="iwae", estimator="standard")
    numeric = numeric_grads(model, x, eps,
                            lambda x, eps: iwae.forward(model.params, x, eps, model.activation)[0])
    assert_all_close(grads, numeric, TOL_FD, "finite differences")
    planted = {k: v.copy() for k, v in grads.items()}
    planted["Encoder.FC_std.bias"][0] += 1e-6 * np.abs(planted["Encoder.FC_std.bias"]).max()
    with pytest.raises(AssertionError, match="FC_std.bias"):
        assert_all_close(planted, numeric, TOL_FD, "planted")


def mc_elbo_grads(model, x, eps):
    """Torch autograd of the ELBO with a Monte-Carlo KL, one sample: BCE + log q(z) − log p(z)."""
    tm = from_params(model.params, dtype=torch.float64, activation=model.activation)
    xt, e = torch.as_tensor(x), torch.as_tensor(eps[0])
    mean, log_var = tm.Encoder(xt)
    std = torch.exp(0.5 * log_var)
    z = mean + std * e
    recon = torch.nn.functional.binary_cross_entropy_with_logits(
        tm.Decoder.logits(z), xt, reduction="sum")
    normal = torch.distributions.Normal
    kl = (normal(mean, std).log_prob(z) - normal(torch.zeros_like(z), 1.0).log_prob(z)).sum()
    (recon + kl).backward()
    return (recon + kl).item(), {k: p.grad.numpy() for k, p in tm.named_parameters()}


def test_at_one_sample_iwae_is_the_monte_carlo_elbo_and_dreg_is_stl():
    model, x, eps = case(seed=5, K=1)
    loss, standard = model.loss_and_grads(x, eps, objective="iwae", estimator="standard")
    ref_loss, ref = mc_elbo_grads(model, x, eps)
    assert abs(loss - ref_loss) <= TOL_TORCH * abs(ref_loss)
    assert_all_close(standard, ref, TOL_TORCH, "K = 1 vs the Monte-Carlo ELBO")
    stl = model.loss_and_grads(x, eps, objective="iwae", estimator="stl")[1]
    dreg = model.loss_and_grads(x, eps, objective="iwae", estimator="dreg")[1]
    assert_all_close(dreg, stl, 1e-15, "dreg vs stl at K = 1")    # w̃ = 1: w̃² = w̃ exactly
    # planted: at K = 5 the two differ, and the check sees it
    model, x, eps = case(seed=5, K=5)
    stl = model.loss_and_grads(x, eps, objective="iwae", estimator="stl")[1]
    dreg = model.loss_and_grads(x, eps, objective="iwae", estimator="dreg")[1]
    with pytest.raises(AssertionError):
        assert_all_close(dreg, stl, 1e-15, "planted: K = 5")


def test_the_three_estimators_share_the_decoders_gradient():
    """The same decoder gradient, bit for bit (the same code computes it); the encoder's
    differ (the planted check: were they equal, the estimators would be one)."""
    model, x, eps = case(seed=7, K=6)
    g = {e: model.loss_and_grads(x, eps, objective="iwae", estimator=e)[1] for e in ESTIMATORS}
    for name in g["standard"]:
        same = [np.array_equal(g["standard"][name], g[e][name]) for e in ("stl", "dreg")]
        assert all(same) == name.startswith("Decoder"), name


# Monte Carlo over ε, the draws' differences (estimator − standard, the same ε) in CHUNKS
# chunks: each chunk's mean is one of CHUNKS near-normal estimates, so |mean| / standard error
# is Student-t with CHUNKS − 1 = 39 degrees of freedom. 6 of them has probability < 1e-6 per
# element (a few dozen elements here). Measured at this size: dreg at K = 5 within 0.73, stl at
# K = 1 within 1.9; stl at K = 5 63–270 (each tensor's worst element).
Z_MAX = 6.0
CHUNKS, DRAWS = 40, 2500


def mean_gradient_gap(estimator, K, seed=3):
    """For each encoder tensor, max over elements of |E[g_estimator − g_standard]| in standard
    errors, over CHUNKS × DRAWS draws of ε for one image (the batch holds DRAWS copies of it,
    so one call sums DRAWS independent draws)."""
    model = nv.VAE(8, 5, 2, dtype="float64", seed=seed, activation="tanh")
    rng = np.random.default_rng(seed)
    x = np.tile(np.round(rng.random(8)), (DRAWS, 1))                     # (DRAWS, 8)
    gaps = []
    for _ in range(CHUNKS):
        eps = rng.standard_normal((K, DRAWS, 2))                         # (K, DRAWS, 2)
        got = model.loss_and_grads(x, eps, objective="iwae", estimator=estimator)[1]
        ref = model.loss_and_grads(x, eps, objective="iwae", estimator="standard")[1]
        gaps.append({k: (got[k] - ref[k]) / DRAWS for k in got if k.startswith("Encoder")})
    worst = {}
    for name in gaps[0]:
        d = np.array([g[name] for g in gaps])                            # (CHUNKS, ...)
        mean, se = d.mean(0), d.std(0, ddof=1) / np.sqrt(CHUNKS)
        # no spread: a pixel that is 0 has no gradient at all (0), a constant gap is a bias (∞)
        flat = np.where(mean == 0, 0.0, np.inf)
        worst[name] = np.max(np.where(se > 0, np.abs(mean) / np.where(se > 0, se, 1), flat))
    return worst


def test_dreg_is_unbiased_and_stl_is_not():
    """Oracle (4): dreg's expectation is the standard estimator's at K = 5 (and stl's too at
    K = 1, where it is dreg). Planted: stl at K = 5, biased (derivation.md §12), is caught."""
    for estimator, K in (("dreg", 5), ("stl", 1)):
        worst = mean_gradient_gap(estimator, K)
        assert max(worst.values()) < Z_MAX, (estimator, K, worst)
    worst = mean_gradient_gap("stl", 5)
    assert min(worst.values()) > Z_MAX, worst


def test_objective_and_estimator_are_checked():
    model, x, eps = case(K=2)
    with pytest.raises(ValueError, match="elbo objective has none"):
        model.loss_and_grads(x, eps, estimator="dreg")
    with pytest.raises(ValueError, match="estimator must be one of"):
        model.loss_and_grads(x, eps, objective="iwae", estimator="drag")
    with pytest.raises(ValueError, match="objective must be one of"):
        model.loss_and_grads(x, eps, objective="iwea")


def test_the_default_objective_is_todays_elbo():
    """objective="elbo" is the same computation as before, bit for bit: the same step."""
    model, x, eps = case(K=3)
    a = model.loss_and_grads(x, eps)
    b = model.loss_and_grads(x, eps, objective="elbo")
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
