"""benchmarks/throughput.py runs every peer end to end, and its validation refuses wrong ones.

Oracle: the benchmark's own validation, a float64 NumPy run (numpyvae + Adam, itself checked
against Torch autograd and torch.optim.Adam in test_parity_torch.py and test_adam.py) of the
same first steps on the same batches and ε. No timings are asserted here: the README's tables
are measurements, not tests. Sizes are tiny (hidden 16, batch 100 of the 1,200-image stand-in,
so every peer compiles one batch shape) because torch.compile's first compile alone takes
tens of seconds of C++ on two cores.
"""
import dataclasses
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fake_mnist
from benchmarks import machine, peers, throughput

QUICK = ["--steps", "3", "--epochs", "1", "--batch-size", "100", "--hidden-dim", "16",
         "--ll-images", "3", "--k", "20"]


def installed(name):
    return importlib.util.find_spec(name) is not None


def test_every_peer_runs_end_to_end(monkeypatch, tmp_path, capsys):
    fake_mnist.install(monkeypatch)
    out = tmp_path / "bench.json"
    assert throughput.main(QUICK + ["--json", str(out)]) == 0
    result = json.loads(out.read_text(), parse_constant=refuse)        # standard JSON: no NaN
    missing = {n for n in peers.CPU_NAMES
               if ("jax" in n and not installed("jax")) or ("torch" in n and not installed("torch"))}
    assert [r["impl"] for r in result["epoch"]] == [n for n in peers.all_names()
                                                     if n not in missing]
    assert {s["impl"] for s in result["skipped"]} == missing
    printed = capsys.readouterr().out
    for name in peers.CPU_NAMES:
        if name not in missing and "gemm floor" not in name:
            assert f"validated {name}: first 3 losses" in printed
    by = {r["impl"]: r for r in result["epoch"]}
    for r in result["epoch"]:
        assert r["seconds_per_epoch"] > 0 and len(r["epochs"]) == 1
        assert r["images_per_s"] == pytest.approx(1200 / r["seconds_per_epoch"])
        if throughput.TORCH in by:
            assert r["vs_torch_eager"] == pytest.approx(
                r["seconds_per_epoch"] / by[throughput.TORCH]["seconds_per_epoch"])
        assert r["vs_floor"] == pytest.approx(
            r["seconds_per_epoch"] / by[throughput.FLOOR]["seconds_per_epoch"])
        # numpyvae chose its BLAS threads before the timing, as `--blas-threads auto` does
        assert ("BLAS thread" in r.get("start", "")) == r["impl"].startswith("numpyvae")
    if installed("threadpoolctl"):
        assert result["machine"]["blas_kernel"]                   # e.g. "Haswell", "SkylakeX"
    ll = {r["impl"]: r["mean_log_px"] for r in result["log_likelihood"] if "mean_log_px" in r}
    assert set(ll) == {"numpyvae numba", "numpyvae numpy"} | (
        {throughput.TORCH} if installed("torch") else set())
    floor = result["log_likelihood"][-1]                 # the same products alone, the ratios' base
    assert floor["impl"] == throughput.FLOOR and floor["vs_floor"] == 1 and floor["seconds"] > 0
    assert all(r["vs_floor"] == pytest.approx(r["seconds"] / floor["seconds"])
               for r in result["log_likelihood"])
    # same ε for all three: the benchmark itself demands agreement to LL_TOLERANCE nats per image
    assert np.ptp(list(ll.values())) <= throughput.LL_TOLERANCE


def refuse(token):
    raise AssertionError(f"{token} in the JSON: not standard JSON")


def plant(monkeypatch, name, change):
    """peers.make, with `change(peer, setup)` applied to the peer called `name`."""
    real = peers.make

    def make(n, setup):
        return change(real(n, setup), setup) if n == name else real(n, setup)
    monkeypatch.setattr(peers, "make", make)

    def never(*args):
        raise AssertionError("time_epochs ran although a peer failed its validation")
    monkeypatch.setattr(throughput, "time_epochs", never)


@pytest.mark.parametrize("name", ["numpyvae numba", "torch eager fused-adam", "jax scan-epoch"])
def test_validation_refuses_a_planted_loss_error(monkeypatch, capsys, name):
    """A peer whose first loss is off by 1e-4 relative (10× the float32 tolerance) is refused
    before anything is timed, in one line, exit status 1."""
    if name.split()[0] in ("torch", "jax") and not installed(name.split()[0]):
        pytest.skip(f"{name.split()[0]} is not installed")
    fake_mnist.install(monkeypatch)

    def off(peer, setup):
        def epoch(ranges):
            losses = peer.epoch(ranges)
            losses[0] *= 1 + 1e-4
            return losses
        return dataclasses.replace(peer, epoch=epoch)
    plant(monkeypatch, name, off)
    assert throughput.main(QUICK + ["--impls", f"gemm floor openblas,{name}",
                                    "--ll-images", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.fullmatch(f"error: {name}: loss .* at step 1 .*Nothing was timed.\n", err)


def test_validation_refuses_an_update_error_the_first_loss_cannot_see(monkeypatch, capsys):
    """A peer that steps with a learning rate 5% too large computes its first loss right; the
    second, from the parameters its update produced, is refused."""
    fake_mnist.install(monkeypatch)
    real = peers.make

    def make(n, setup):
        return real(n, dataclasses.replace(setup, lr=setup.lr * 1.05))
    monkeypatch.setattr(peers, "make", make)
    assert throughput.main(QUICK + ["--impls", "numpyvae numba", "--ll-images", "0"]) == 1
    assert re.match("error: numpyvae numba: loss .* at step 2", capsys.readouterr().err)


def test_a_missing_library_is_one_line_saying_how_to_install_it(monkeypatch, tmp_path, capsys):
    fake_mnist.install(monkeypatch)
    monkeypatch.setitem(sys.modules, "jax", None)                   # `import jax` fails
    out = tmp_path / "bench.json"
    assert throughput.main(QUICK + ["--impls", "numpyvae numba,jax jit,jax scan-epoch",
                                    "--ll-images", "0", "--json", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert lines == [f"  skipped {n}: jax is not installed: {peers.JAX_HINT}"
                     for n in ("jax jit", "jax scan-epoch")]
    result = json.loads(out.read_text())
    assert [r["impl"] for r in result["epoch"]] == ["numpyvae numba"]
    assert [s["impl"] for s in result["skipped"]] == ["jax jit", "jax scan-epoch"]


def test_unknown_impl_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as stop:
        throughput.main(["--impls", "torch eagre"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --impls: unknown 'torch eagre'" in err
    assert "expected comma-separated names of: numpyvae numba," in err


def test_pin_warning_names_both_kernels_and_the_unpinned_command():
    pinned = dict(blas_kernel="Haswell", blas_kernel_unpinned="SkylakeX",
                  openblas_coretype="Haswell")
    warning = machine.pin_warning(pinned, "python -m benchmarks.throughput --epochs 5")
    assert "OPENBLAS_CORETYPE=Haswell" in warning and "SkylakeX" in warning
    assert ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.throughput "
            "--epochs 5") in warning
    assert machine.pin_warning(dict(pinned, blas_kernel_unpinned="Haswell")) is None
    assert machine.pin_warning(dict(pinned, openblas_coretype=None)) is None


def test_busy_times_every_peer_again_beside_a_competitor(monkeypatch, tmp_path):
    """--busy: each row gains its epochs beside one other CPU-bound process and the slowdown
    (busy / quiet), computed from the stored epochs; the competitor is running while the busy
    epochs are timed and is gone afterwards. Oracle: the JSON's own figures, the process table."""
    fake_mnist.install(monkeypatch)
    seen = []
    real = throughput.competing_process

    @throughput.contextlib.contextmanager
    def watched():
        with real() as proc:
            assert proc.poll() is None                  # running: the busy epochs compete
            seen.append(proc)
            yield proc
    monkeypatch.setattr(throughput, "competing_process", watched)
    out = tmp_path / "busy.json"
    argv = [*QUICK, "--ll-images", "0", "--impls", "numpyvae numba,gemm floor openblas", "--busy",
            "--json", str(out)]
    assert throughput.main(argv) == 0
    rows = json.loads(out.read_text(), parse_constant=refuse)["epoch"]
    assert len(rows) == 2 and len(seen) == 1 and seen[0].poll() is not None   # stopped
    for r in rows:
        assert len(r["busy_epochs"]) == 1 and r["busy_seconds_per_epoch"] > 0
        assert r["slowdown"] == pytest.approx(r["busy_seconds_per_epoch"] / r["seconds_per_epoch"])


def test_the_log_likelihood_floor_does_the_evaluations_decoder_products(monkeypatch):
    """Oracle: the evaluation itself. With np.matmul recorded, numpyvae.likelihood's numba path
    and peers.log_likelihood_floor multiply operands of the same shapes, chunk for chunk, for a
    k that leaves a partial last chunk (the encoder's own products, `@`, are the floor's first
    four); a floor one sample short (planted: its partial chunk smaller) does not match."""
    import numpyvae as nv
    from numpyvae import likelihood
    model = nv.VAE(784, 8, 3, backend="numba")
    x = np.zeros((4, 784), np.float32)
    seen, real = [], np.matmul

    def recording(a, b, **kw):
        seen.append((a.shape, b.shape))
        return real(a, b, **kw)
    monkeypatch.setattr(np, "matmul", recording)
    likelihood.log_likelihood(model, x, 7, np.random.default_rng(0), rows=12)   # chunks 3, 3, 1
    evaluation, seen[:] = list(seen), []
    floor = peers.log_likelihood_floor(model.params, 4, "float32", rows=12)
    floor(7)
    assert seen[4:] == evaluation and len(evaluation) == 9
    seen[:] = []
    floor(6)
    assert seen[4:] != evaluation


# ---------------------------------------------------------------------------------------------
# the importance-weighted bound (--objective iwae)

IWAE = ["--objective", "iwae", "--samples", "3", "--estimator", "dreg", "--activation", "tanh"]


def test_every_peer_trains_the_bound_it_is_asked_for(monkeypatch, tmp_path, capsys):
    """Oracle: the benchmark's validation, against numpyvae's float64 NumPy path on the same
    bound (itself checked against Torch autograd in tests/math/test_iwae.py): every installed
    peer's first three losses of IWAE K=3, dreg, tanh. At this size the losses do not tell the
    estimators apart (stl's third differs from dreg's by 7e-6, below the float32 tolerance);
    test_the_peers_bound_has_the_oracles_gradients does."""
    fake_mnist.install(monkeypatch)
    out = tmp_path / "bench.json"
    assert throughput.main(QUICK + IWAE + ["--ll-images", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tanh, IWAE K=3 (dreg), float32" in printed
    missing = {n for n in peers.CPU_NAMES
               if ("jax" in n and not installed("jax"))
               or ("torch" in n and not installed("torch"))}
    for name in peers.CPU_NAMES:
        if name not in missing and "gemm floor" not in name:
            assert f"validated {name}: first 3 losses" in printed
    settings = json.loads(out.read_text())["settings"]
    assert {k: settings[k] for k in ("objective", "samples", "estimator", "activation")} == dict(
        objective="iwae", samples=3, estimator="dreg", activation="tanh")


# float64 rounding, with log q written as the peers write it (from ε, or from (z − μ)/σ) and
# the products summed in another order: measured ≤ 5.7e-13 of each tensor's largest entry.
GRADIENT_TOLERANCE = 1e-10


def speed_written_grads(library, estimator, model, x, eps):
    """(loss, {name: gradient}) of −Σ L_K from the torch peer's neg_iwae_for_speed (eager, or
    under torch.compile as the `torch compile` peer runs it) or the jax peer's
    jax_loss_and_grads, in float64."""
    if library.startswith("torch"):
        import torch                                   # an optional peer: skipped without it
        from reference.model import from_params
        tm = from_params(model.params, dtype=torch.float64, activation=model.activation)

        def loss_fn(x, eps):
            return peers.neg_iwae_for_speed(torch, tm, x, eps, estimator)
        if library == "torch compile":
            loss_fn = torch.compile(loss_fn, dynamic=False, fullgraph=True)
        loss = loss_fn(torch.from_numpy(x), torch.from_numpy(eps))
        loss.backward()
        return float(loss.detach()), {k: p.grad.numpy() for k, p in tm.named_parameters()}
    import jax                                         # an optional peer: skipped without it
    setup = peers.Setup(model.params, x, eps, "float64", activation=model.activation,
                        objective="iwae", estimator=estimator)
    with jax.enable_x64(True):
        loss, grads = peers.jax_loss_and_grads(jax, setup)(
            {k: jax.numpy.asarray(v) for k, v in model.params.items()}, x, eps)
        return float(loss), {k: np.asarray(v) for k, v in grads.items()}


def worst_gradient_error(library, estimator, planted=None):
    """The largest |peer − oracle| / max|oracle| over the 14 gradients, the oracle numpyvae's
    float64 NumPy path with `estimator`, the peer with `planted` (default: the same)."""
    import numpyvae as nv
    if not installed(library.split()[0]):
        pytest.skip(f"{library.split()[0]} is not installed")
    if library == "torch compile" and not any(shutil.which(cc) for cc in ("g++", "c++")):
        pytest.skip("torch compile needs a C++ compiler")
    rng = np.random.default_rng(0)
    model = nv.VAE(784, 16, 4, dtype="float64", activation="tanh", seed=1)
    x = (rng.random((7, 784)) < 0.3).astype(np.float64)                   # (B, D)
    eps = rng.standard_normal((5, 7, 4))                                  # (K, B, Z)
    loss, grads = model.loss_and_grads(x, eps, objective="iwae", estimator=estimator)
    peer_loss, peer_grads = speed_written_grads(library, planted or estimator, model, x, eps)
    assert peer_loss == pytest.approx(loss, rel=GRADIENT_TOLERANCE)
    return max(np.max(np.abs(peer_grads[k] - g)) / np.max(np.abs(g)) for k, g in grads.items())


@pytest.mark.parametrize("library", ["torch", "jax"])
@pytest.mark.parametrize("estimator", ["standard", "stl", "dreg"])
def test_the_peers_bound_has_the_oracles_gradients(library, estimator):
    """The torch and jax peers write the bound for speed (one decoder pass; the estimator by a
    hook on z, or by jax.vjp), not as reference.model.neg_iwae does. Oracle: numpyvae's float64
    NumPy path, checked against Torch autograd of neg_iwae in tests/math/test_iwae.py."""
    assert worst_gradient_error(library, estimator) <= GRADIENT_TOLERANCE


def test_torch_compile_keeps_the_dreg_hook():
    """The `torch compile` peer compiles the same function with fullgraph=True; the hook that
    gives dreg its w̃² must survive the compilation (the oracle as above)."""
    assert worst_gradient_error("torch compile", "dreg") <= GRADIENT_TOLERANCE


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_a_peer_without_dregs_second_weight_is_caught(library):
    """Planted: the peer computes stl (its path gradient weighted by w̃, not w̃²) where the
    oracle computes dreg."""
    assert worst_gradient_error(library, "dreg", planted="stl") > 1e3 * GRADIENT_TOLERANCE


def test_the_gemm_floor_does_the_bounds_products(monkeypatch):
    """Oracle: the numba step itself. With np.matmul recorded, one IWAE K=5 step of numpyvae's
    numba path and one step of the floor built with samples=5 multiply operands of the same
    shapes (in their own orders); a floor built for one sample (planted) does not."""
    import numpyvae as nv
    model = nv.VAE(784, 8, 3, backend="numba")
    x, eps = np.zeros((4, 784), np.float32), np.zeros((5, 4, 3), np.float32)
    model.loss_and_grads(x, eps, objective="iwae")                       # compiled, untimed
    seen, real = [], np.matmul

    def recording(a, b, **kw):
        seen.append((a.shape, b.shape))
        return real(a, b, **kw)
    monkeypatch.setattr(np, "matmul", recording)
    model.loss_and_grads(x, eps, objective="iwae")
    step, seen[:] = sorted(seen), []
    peers.gemm_floor_epoch(8, 3, "float32", samples=5)([(0, 4)])
    assert sorted(seen) == step and len(step) == 20
    seen[:] = []
    peers.gemm_floor_epoch(8, 3, "float32", samples=1)([(0, 4)])
    assert sorted(seen) != step


def test_the_machine_block_says_how_many_cores_the_run_could_use(monkeypatch):
    """Oracle: the CPU affinity a run was given (taskset -c 0: one core of two)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    m = machine.info()
    assert m["usable_cores"] == 1
    if m["cores"] > 1:
        assert f"{m['cores']} cores, 1 usable (" in machine.describe(m)
