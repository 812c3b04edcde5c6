"""Initialisation, the public API, and the package's independence from torch."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

import numpyvae as nv
from reference.model import (Model, build, params_from_state_dict, pick_device,
                             state_dict_from_params)

NAMES = [f"Encoder.{l}.{p}" for l in ("FC_enc1", "FC_enc2", "FC_mean", "FC_std")
         for p in ("weight", "bias")] + \
        [f"Decoder.{l}.{p}" for l in ("FC_dec1", "FC_dec2", "FC_output")
         for p in ("weight", "bias")]


def test_param_names_and_shapes_are_the_notebooks_state_dict():
    """Oracle: the reference Model's own state_dict (names, order, shapes)."""
    model = nv.VAE()
    ref = build(784, 200, 20).state_dict()
    assert list(model.params) == list(ref) == NAMES
    assert {k: v.shape for k, v in model.params.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert model.num_params == sum(v.numel() for v in ref.values())
    assert all(v.dtype == np.float32 for v in model.params.values())


def test_state_dict_round_trip_strict():
    model = nv.VAE(dtype="float64", seed=3)
    tm = build(784, 200, 20, dtype=torch.float64)
    tm.load_state_dict(state_dict_from_params(model.params), strict=True)
    back = params_from_state_dict(tm.state_dict())
    assert all(np.array_equal(back[k], model.params[k]) for k in NAMES)
    other = nv.VAE(dtype="float64", seed=4)
    other.load_params(back)
    assert np.array_equal(other.flat, model.flat)


def test_init_distribution_matches_torch_linear():
    """Oracle: torch.nn.Linear's own default initialisation, by a two-sample KS test."""
    ours = nv.VAE(seed=0).params
    torch.manual_seed(0)
    theirs = build(784, 200, 20).state_dict()
    for name in ("Encoder.FC_enc1.weight", "Decoder.FC_output.weight", "Encoder.FC_enc2.bias"):
        a, b = ours[name].ravel(), theirs[name].numpy().ravel()
        assert stats.ks_2samp(a, b).pvalue > 1e-3, name
        assert np.abs(a).max() <= 1 / np.sqrt(ours[name.replace("bias", "weight")].shape[1])


def test_init_ks_check_can_fail():
    """The KS check rejects a wrong bound (√2 too wide, as kaiming_uniform with a=0 gives)."""
    a = nv.VAE(seed=0).params["Encoder.FC_enc1.weight"].ravel() * np.sqrt(2)
    torch.manual_seed(0)
    b = build(784, 200, 20).state_dict()["Encoder.FC_enc1.weight"].numpy().ravel()
    assert stats.ks_2samp(a, b).pvalue < 1e-6


def test_init_is_deterministic_per_seed_and_dtype():
    a, b, c = nv.VAE(seed=0), nv.VAE(seed=0), nv.VAE(seed=1)
    assert np.array_equal(a.flat, b.flat) and not np.array_equal(a.flat, c.flat)
    d = nv.VAE(seed=0, dtype="float64")
    assert np.array_equal(d.flat.astype(np.float32), a.flat)


def test_grads_are_keyed_like_params_and_reuse_out():
    model = nv.VAE(20, 8, 3, dtype="float64")
    x = np.ones((5, 20)); eps = np.zeros((5, 3))
    _, grads = model.loss_and_grads(x, eps)
    assert list(grads) == list(model.params)
    gflat, out = model.new_grads()
    _, g2 = model.loss_and_grads(x, eps, out=out)
    assert g2 is out and np.array_equal(gflat, np.concatenate([g.ravel() for g in grads.values()]))


@pytest.mark.parametrize("kwargs,match", [
    (dict(hidden_dim=0), "hidden_dim"), (dict(latent_dim=-1), "latent_dim"),
    (dict(dtype="float16"), "dtype"), (dict(x_dim=2.5), "x_dim")])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nv.VAE(**kwargs)


def test_bad_shapes_are_refused():
    model = nv.VAE(20, 8, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 20\)"):
        model.loss_and_grads(np.zeros((4, 21)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="eps must have shape"):
        model.loss_and_grads(np.zeros((4, 20)), np.zeros((5, 3)))


def test_import_numpyvae_does_not_import_torch():
    code = ("import sys, numpyvae, numpyvae.model, numpyvae.adam; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_reference_device_choice_on_this_machine():
    dev = pick_device()
    assert dev.type == ("cuda" if torch.cuda.is_available() else
                        "mps" if torch.backends.mps.is_available() else "cpu")
    assert isinstance(build(), Model)
