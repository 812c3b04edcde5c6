"""benchmarks/throughput.py runs end to end, and its validation step rejects a wrong loss.

Oracle: the benchmark's own validation, a float64 NumPy step on the same batch and ε (itself
checked against Torch autograd in test_parity_torch.py). No timings are asserted here: speed
targets live in benchmarks/, and its README table is a measurement, not a test.
"""
import json

import numpy as np
import pytest

import fake_mnist
from benchmarks import throughput

QUICK = ["--steps", "2", "--epochs", "1", "--ll-images", "3", "--k", "20"]


def test_runs_and_writes_every_row(monkeypatch, tmp_path):
    fake_mnist.install(monkeypatch)
    out = tmp_path / "bench.json"
    throughput.main(QUICK + ["--json", str(out)])
    result = json.loads(out.read_text())
    names = [r["impl"] for r in result["epoch"]]
    assert names == ["numpyvae (numba)", "numpyvae (numpy)", "torch cpu",
                     throughput.FLOOR, throughput.TORCH_FLOOR]
    torch_cpu = result["epoch"][2]["seconds_per_epoch"]
    for r in result["epoch"]:
        assert r["seconds_per_epoch"] > 0
        assert r["vs_torch_cpu"] == pytest.approx(r["seconds_per_epoch"] / torch_cpu)
    ll = {r["impl"]: r["mean_log_px"] for r in result["log_likelihood"]}
    assert set(ll) == {"numpyvae (numba)", "numpyvae (numpy)", "torch cpu"}
    # same ε for all three: the benchmark itself demands agreement to 1e-3 nats per image
    assert np.ptp(list(ll.values())) <= 1e-3


def test_validation_rejects_a_planted_loss_error(monkeypatch):
    """A numba path whose loss is off by 1e-4 relative (10× the float32 tolerance) is refused
    before anything is timed."""
    fake_mnist.install(monkeypatch)
    real = throughput.numpyvae_impl

    def planted(backend, *args):
        validate, epoch, model = real(backend, *args)
        if backend != "numba":
            return validate, epoch, model

        def off(x, eps):
            loss, grads = validate(x, eps)
            return loss * (1 + 1e-4), grads
        return off, epoch, model
    monkeypatch.setattr(throughput, "numpyvae_impl", planted)
    with pytest.raises(throughput.ValidationError, match="numpyvae \\(numba\\): loss"):
        throughput.main(QUICK + ["--no-torch"])
