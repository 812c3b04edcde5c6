"""`python -m reference.gradcheck`, the Torch-autograd check a user runs: it passes on a fresh
network and on the shipped trained one, and a planted backward error fails it, by name.

Oracle: PyTorch autograd (as test_parity_torch.py), through the command's own output and exit
status; its tolerance is reference/compare.py's (float64 1e-10, float32 1e-5).
"""
from pathlib import Path

import numpy as np
import pytest

import fake_mnist
import numpyvae.oracle.network
from reference import gradcheck

SHIPPED = str(Path(__file__).resolve().parents[2] / "results" / "burda2015-vae")


def lines(out):
    """{tensor: status} from the command's table."""
    rows = [l.split() for l in out.splitlines() if l.endswith((" OK", " FAIL"))]
    return {r[0]: r[-1] for r in rows}


@pytest.mark.parametrize("argv", [[], ["--dtype", "float32", "--batch-size", "128"],
                                  ["--activation", "tanh", "--init", "glorot", "--samples", "3"],
                                  ["--backend", "numpy", "--latent-dim", "2"]])
def test_passes_on_a_fresh_network(argv, capsys):
    assert gradcheck.main(argv) == 0
    table = lines(capsys.readouterr().out)
    assert len(table) == 19 and set(table.values()) == {"OK"}          # loss, 4, 14 gradients


def test_passes_on_the_shipped_run(monkeypatch, capsys):
    """Its weights, on test-like images (the stand-in data: no network), float32 as trained."""
    fake_mnist.install(monkeypatch)
    assert gradcheck.main(["--run", SHIPPED, "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "784-200-50 tanh" in out and set(lines(out).values()) == {"OK"}


def test_a_planted_backward_error_fails_naming_the_tensor(monkeypatch, capsys):
    """One entry of one gradient off by 1e-6 of its tensor's largest: exit 1, that tensor FAIL,
    every other OK."""
    real = numpyvae.oracle.network.backward

    def planted(params, cache, grads):
        out = real(params, cache, grads)
        g = out["Decoder.FC_dec2.weight"]
        g[3, 4] += 1e-6 * np.abs(g).max()
        return out
    monkeypatch.setattr(numpyvae.oracle.network, "backward", planted)
    assert gradcheck.main(["--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    table = lines(out)
    assert table.pop("Decoder.FC_dec2.weight") == "FAIL" and set(table.values()) == {"OK"}
    assert out.splitlines()[-1].startswith("FAIL: 1 tensor(s)") and "FC_dec2.weight" in out


def test_run_refuses_network_flags_it_would_ignore(capsys):
    """--run checks the run's own network: a flag describing another is a usage error."""
    assert gradcheck.main(["--run", SHIPPED, "--activation", "tanh"]) == 2
    assert "drop it" in capsys.readouterr().err


@pytest.mark.parametrize("estimator", ["standard", "stl", "dreg"])
@pytest.mark.parametrize("argv", [["--samples", "5"],
                                  ["--samples", "5", "--dtype", "float32", "--activation", "tanh",
                                   "--init", "glorot", "--latent-dim", "50", "--batch-size", "20"],
                                  ["--samples", "1", "--backend", "numpy", "--latent-dim", "3"]])
def test_passes_on_the_bound_by_every_estimator(estimator, argv, capsys):
    """--objective iwae: the loss, 5 intermediates (the weights w̃ among them), 14 gradients."""
    assert gradcheck.main(["--objective", "iwae", "--estimator", estimator, *argv]) == 0
    out = capsys.readouterr().out
    table = lines(out)
    assert len(table) == 20 and set(table.values()) == {"OK"} and "weights" in table
    assert f"iwae K={argv[1]} ({estimator})" in out


def test_a_planted_estimator_error_fails_naming_the_tensors(monkeypatch, capsys):
    """numpyvae's DReG replaced by its STL: the encoder's tensors FAIL, the decoder's pass."""
    from numpyvae.fast import kernels
    real = kernels.ESTIMATOR_CODES
    monkeypatch.setattr(kernels, "ESTIMATOR_CODES", {**real, "dreg": real["stl"]})
    assert gradcheck.main(["--objective", "iwae", "--samples", "5", "--estimator", "dreg"]) == 1
    table = lines(capsys.readouterr().out)
    failed = {k for k, v in table.items() if v == "FAIL"}
    assert failed and all(k.startswith("Encoder") for k in failed)


def test_an_estimator_without_the_bound_is_refused(capsys):
    assert gradcheck.main(["--estimator", "dreg"]) == 2
    assert "add --objective iwae" in capsys.readouterr().err
