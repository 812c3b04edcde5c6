"""The arithmetic a run computes with (numpyvae/run/arithmetic.py): read, printed, recorded in the
run folder, and compared on resume.

Oracles: OpenBLAS itself, in a child process pinned to its Sandybridge (AVX) kernel, which no
AVX2 CPU picks on its own, and numba under NUMBA_DISABLE_JIT=1 — the record must name what the
process really runs; the run folder's config.json and checkpoint; the lines printed.
"""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import fake_mnist
from numpyvae import checkpoint as ck
from numpyvae.run import arithmetic

ROOT = Path(__file__).resolve().parents[2]
TESTS = str(ROOT / "tests")
QUICK = ["--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100", "--limit", "300",
         "--blas-threads", "1"]
pinnable = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or "avx2" not in arithmetic.cpu()[1]
    or arithmetic.record()["blas"] != "openblas",
    reason="needs OpenBLAS's x86 kernels and an AVX2 CPU")


def unpinned(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in arithmetic.PIN_VARS and k != "NUMBA_DISABLE_JIT"}
    return dict(env, **extra)


@pinnable
def test_a_pinned_kernel_is_read_and_the_unpinned_one_found():
    code = ("import json; from numpyvae.run import arithmetic; "
            "print(json.dumps([arithmetic.record(), arithmetic.unpinned_kernel()]))")
    env = unpinned(OPENBLAS_CORETYPE="Sandybridge", OPENBLAS_L2_SIZE="512", NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    rec, own = json.loads(out)
    assert rec["blas_kernel"] == "Sandybridge" and own not in (None, "Sandybridge")
    assert rec["blas_kernel_set_by"] == "OPENBLAS_CORETYPE=Sandybridge OPENBLAS_L2_SIZE=512"
    assert rec["numba_jit"] is False
    line = arithmetic.describe(rec)
    assert "kernel Sandybridge, set by OPENBLAS_CORETYPE=Sandybridge" in line
    assert "not compiling (NUMBA_DISABLE_JIT" in line


def train(argv, env):
    code = fake_mnist.PRELUDE.format(tests=TESTS) + f"sys.exit(main({argv!r}, cli=True))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pinnable
def test_a_run_records_its_arithmetic_and_a_resume_under_another_says_so(tmp_path):
    """Epoch 1 under the Sandybridge kernel without numba compiling, epoch 2 resumed under
    this CPU's own kernel, compiling: the resume says both in one line and goes on, and the
    record holds both stretches, each with where it began."""
    out = tmp_path / "run"
    first = train([*QUICK, "--backend", "numpy", "--epochs", "1", "--out", str(out)],
                  unpinned(OPENBLAS_CORETYPE="Sandybridge", NUMBA_DISABLE_JIT="1"))
    assert "arithmetic: numpy " in first and "(kernel Sandybridge, set by OPENBLAS_CORETYPE=" \
        "Sandybridge), 1 thread; numba " in first and ", not compiling" in first
    then = train(["--resume", "--out", str(out), "--epochs", "2"], unpinned())
    [said] = [l for l in then.splitlines() if "is not the run's" in l]
    own = json.loads((out / "config.json").read_text())["arithmetic"][1]["blas_kernel"]
    assert said == ("the arithmetic is not the run's (recorded from epoch 1): BLAS kernel "
                    f"Sandybridge → {own}, numba not compiling → compiling; the run goes on, "
                    "but no longer repeats an uninterrupted run bit for bit")
    for config in (json.loads((out / "config.json").read_text()),
                   ck.load(out / "checkpoint.npz").config):
        first_stretch, second = config["arithmetic"]
        assert (first_stretch["blas_kernel"], first_stretch["numba_jit"],
                first_stretch["began"]) == ("Sandybridge", False, [0, 0])
        assert (second["blas_kernel"], second["numba_jit"], second["began"]) == (own, True, [1, 0])
        assert second["blas_threads"] == 1 and second["numpy"] and second["cpu"]
    assert arithmetic.resumed_line([first_stretch, second],
                                   {k: v for k, v in second.items() if k != "began"}) is None


def test_a_record_that_is_not_numpyvaes_is_refused(tmp_path, monkeypatch):
    """The checkpoint reader checks the record as it checks every setting: it is printed."""
    fake_mnist.install(monkeypatch)
    from numpyvae import train as train_command
    out = tmp_path / "run"
    assert train_command.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    c = ck.load(out / "checkpoint.npz")
    assert [e["began"] for e in c.config["arithmetic"]] == [[0, 0]]
    for bad, says in (("x" * 300, "is not a list"), ([{"cpu": "x"}], "began is None"),
                      ([{"began": [0, 0], "cpu": ["x"] * 9}], "cpu is not a short text")):
        c.config = dict(c.config, arithmetic=bad)
        ck.save(tmp_path / "bad.npz", c)
        with pytest.raises(ck.CheckpointError, match=f"arithmetic record .*{says}"):
            ck.load(tmp_path / "bad.npz")
