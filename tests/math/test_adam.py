"""Oracle: torch.optim.Adam, fed the same gradient sequence.

Tolerance 1e-12 by rel_err in float64: both sides do the same operations in the same order
(lerp, addcmul, bias-corrected addcdiv), so after 200 steps they agree to a few ulps.
"""
import inspect

import numpy as np
import pytest
import torch

import numpyvae as nv
from checks import assert_all_close, rel_err

TOL = 1e-12


def run_both(steps=200, lr=1e-3, seed=0):
    model = nv.VAE(x_dim=30, hidden_dim=16, latent_dim=4, dtype="float64", seed=seed,
                   backend="numpy")
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.params.items()}
    topt = torch.optim.Adam(tparams.values(), lr=lr)
    opt = nv.Adam(model.num_params, "float64", lr=lr, backend="numpy")
    gflat, grads = model.new_grads()
    rng = np.random.default_rng(seed)
    for t in range(steps):
        # gradients of changing scale and sign, some exactly zero, as training produces
        scale = 10.0 ** rng.uniform(-6, 1)
        gflat[...] = rng.standard_normal(gflat.shape) * scale
        gflat[rng.random(gflat.shape) < 0.05] = 0.0
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k].copy())
        topt.step()
        opt.step(model.flat, gflat)
    return model, opt, tparams, topt


def test_defaults_match_torch():
    d = inspect.signature(torch.optim.Adam).parameters
    ours = inspect.signature(nv.Adam).parameters
    assert ours["lr"].default == d["lr"].default
    assert ours["betas"].default == d["betas"].default
    assert ours["eps"].default == d["eps"].default


def test_200_steps_equal_torch():
    model, opt, tparams, topt = run_both()
    assert_all_close(model.params, {k: p.detach().numpy() for k, p in tparams.items()}, TOL)
    state = topt.state
    m = nv.model.views(opt.m, model.shapes)
    v = nv.model.views(opt.v, model.shapes)
    assert_all_close(m, {k: state[p]["exp_avg"].numpy() for k, p in tparams.items()}, TOL)
    assert_all_close(v, {k: state[p]["exp_avg_sq"].numpy() for k, p in tparams.items()}, TOL)
    assert opt.t == 200 == int(state[tparams["Encoder.FC_enc1.bias"]]["step"])


def test_planted_error_is_rejected():
    model, _, tparams, _ = run_both(steps=20)
    ref = {k: p.detach().numpy() for k, p in tparams.items()}
    ours = {k: v.copy() for k, v in model.params.items()}
    w = ours["Decoder.FC_dec2.weight"]
    w.flat[np.argmax(np.abs(w))] *= 1 + 1e-6
    assert rel_err(w, ref["Decoder.FC_dec2.weight"]) > TOL
    with pytest.raises(AssertionError):
        assert_all_close(ours, ref, TOL)


def test_bad_learning_rate():
    with pytest.raises(ValueError, match="learning rate"):
        nv.Adam(10, lr=0.0)
