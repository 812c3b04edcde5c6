"""The importance-weighted estimate of log p(x) (Burda et al. 2015) and the per-image ELBO.

Oracles: (1) a known value — with a 1-dimensional latent, log p(x) = log ∫ p(x|z) N(z; 0, 1) dz
is computed by dense quadrature, and L_k must approach it; (2) the model's own batch loss
(per-image −ELBO summed equals forward's loss); (3) the bound's properties: E[L_1] = ELBO,
L_k rises with k, L_k ≥ ELBO up to Monte-Carlo noise.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy.special import logsumexp

import numpyvae as nv
from numpyvae import likelihood
from numpyvae.oracle import likelihood as oracle
from numpyvae.oracle.loss import bernoulli_nll
from numpyvae.oracle.network import encode

LOG_WEIGHTS = oracle.log_weights                   # the real one, under any monkeypatch


def tiny(seed=0):
    model = nv.VAE(x_dim=6, hidden_dim=5, latent_dim=1, dtype="float64", seed=seed,
                   backend="numpy")
    model.params["Decoder.FC_output.weight"][...] *= 8      # make p(x|z) depend on z strongly
    model.params["Encoder.FC_std.bias"][...] = 2.0          # a wide proposal, σ² ≈ e²: L_k settles fast
    x = np.round(np.random.default_rng(seed).random((3, 6)))
    return model, x


def exact_log_px(model, x):
    """log ∫ p(x|z) N(z; 0, 1) dz by the trapezoid rule on a fine grid (error ≪ 1e-6)."""
    z = np.linspace(-12, 12, 48001)                          # (G,)
    logits = model.decode_logits(z[:, None])                 # (G, D)
    log_joint = (-bernoulli_nll(logits[:, None, :], x).sum(-1)
                 - 0.5 * (z[:, None] ** 2 + np.log(2 * np.pi)))   # (G, B)
    w = np.full(len(z), z[1] - z[0]); w[[0, -1]] /= 2
    return logsumexp(log_joint + np.log(w)[:, None], axis=0)


def test_converges_to_quadrature_value():
    model, x = tiny()
    exact = exact_log_px(model, x)
    est = likelihood.log_likelihood(model, x, 20000, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    elbo = np.mean([-sum(likelihood.neg_elbo_per_image(model, x, rng.standard_normal((3, 1))))
                    for _ in range(2000)], axis=0)
    # Tolerance 0.1 nat: L_20000's error here measured ≤ 0.03 over six seeds. The E[ELBO] gap
    # (asserted ≥ 0.3) and the planted error below (≈ 1 nat) are far outside it.
    assert np.all(np.abs(est - exact) < 0.1), (est, exact)
    assert np.all(exact - elbo > 0.3), (exact, elbo)


def test_quadrature_check_rejects_a_wrong_proposal_density(monkeypatch):
    """Planted error: log q without its log σ² term must miss the known value."""
    model, x = tiny()
    exact = exact_log_px(model, x)
    def wrong(params, x, eps, activation):
        _, logvar, _ = encode(params, x, activation)                          # (B, Z)
        return LOG_WEIGHTS(params, x, eps, activation) - 0.5 * logvar.sum(axis=1)
    monkeypatch.setattr(oracle, "log_weights", wrong)
    est = likelihood.log_likelihood(model, x, 20000, np.random.default_rng(1))
    assert np.max(np.abs(est - exact)) > 0.1          # the tolerance above


def test_per_image_elbo_sums_to_the_batch_loss():
    model = nv.VAE(20, 8, 3, dtype="float64", seed=0, backend="numpy")
    rng = np.random.default_rng(0)
    x, eps = np.round(rng.random((7, 20))), rng.standard_normal((7, 3))
    recon, kl = likelihood.neg_elbo_per_image(model, x, eps)
    loss, cache = model.forward(x, eps)
    assert np.isclose(recon.sum(), cache["recon"], rtol=1e-13)
    assert np.isclose(kl.sum(), cache["kl"], rtol=1e-13)
    assert np.isclose((recon + kl).sum(), loss, rtol=1e-13)


def test_bound_properties():
    model = nv.VAE(30, 10, 4, dtype="float64", seed=3, backend="numpy")
    x = np.round(np.random.default_rng(0).random((8, 30)))
    rng = np.random.default_rng(5)
    draws = 400
    l1 = np.array([likelihood.log_likelihood(model, x, 1, rng) for _ in range(draws)])   # (R, B)
    elbo = np.array([-sum(likelihood.neg_elbo_per_image(model, x, rng.standard_normal((8, 4))))
                     for _ in range(draws)])
    se = np.sqrt(l1.var(axis=0) / draws + elbo.var(axis=0) / draws)
    # k = 1 is the ELBO estimator: equal in expectation (4 standard errors)
    assert np.all(np.abs(l1.mean(0) - elbo.mean(0)) < 4 * se + 1e-12)
    l10 = np.mean([likelihood.log_likelihood(model, x, 10, rng) for _ in range(50)], axis=0)
    l1000 = likelihood.log_likelihood(model, x, 1000, rng)
    # L_1000 is one draw: 0.05 nat covers its spread (its standard deviation here is < 0.01)
    assert np.all(l10 > l1.mean(0)) and np.all(l1000 > l10 - 0.05)
    assert np.all(l1000 >= elbo.mean(0) - 4 * se)


def chunks_seen(monkeypatch, model, x, k, rng, rows):
    """The ε of every chunk log_likelihood weighs, in order (NumPy path)."""
    seen = []

    def recording(params, x, eps, activation):
        seen.append(eps.copy())
        return LOG_WEIGHTS(params, x, eps, activation)
    monkeypatch.setattr(oracle, "log_weights", recording)
    likelihood.log_likelihood(model, x, k, rng, rows=rows)
    return seen


def test_draws_are_a_plain_loops(monkeypatch):
    """Oracle: a plain loop on the same Generator drawing the chunks one after another (3 images,
    rows 6: chunks of 2, 2, 2, 1 samples). The chunks drawn ahead on log_likelihood's drawing
    thread are those ε bit for bit (tolerance 0), and the Generator is left where that loop
    leaves it, so the next batch's draws do not move."""
    model, x = tiny()
    rng = np.random.default_rng(3)
    seen = chunks_seen(monkeypatch, model, x, 7, rng, rows=6)
    plain = np.random.default_rng(3)
    expected = [plain.standard_normal((s, 3, 1)) for s in (2, 2, 2, 1)]
    assert len(seen) == 4 and all(np.array_equal(a, b) for a, b in zip(seen, expected))
    assert rng.bit_generator.state == plain.bit_generator.state
    # Planted: a drawing thread that draws one chunk more than is weighed (the same ε, the
    # Generator a chunk further on, so the next batch's draws would move) is caught.

    class DrawsOneMore(ThreadPoolExecutor):
        def submit(self, fn, *args):
            self.last = fn, args
            return super().submit(fn, *args)

        def __exit__(self, *exc):
            fn, args = self.last
            fn(*args)
            return super().__exit__(*exc)
    monkeypatch.setattr(likelihood, "ThreadPoolExecutor", DrawsOneMore)
    planted = np.random.default_rng(3)
    again = chunks_seen(monkeypatch, model, x, 7, planted, rows=6)
    assert all(np.array_equal(a, b) for a, b in zip(again, expected))
    assert planted.bit_generator.state != plain.bit_generator.state


def test_bad_k():
    model, x = tiny()
    with pytest.raises(ValueError, match="k must be"):
        likelihood.log_likelihood(model, x, 0, np.random.default_rng())
    with pytest.raises(ValueError, match="workers must be"):
        likelihood.log_likelihood(model, x, 5, np.random.default_rng(), workers=0)
