"""The run folder as a transaction: one writer, no dead ends, bounded memory,
every signal handled, every bad request one line.

Oracles: exit statuses and the one-line messages; the files in the run folder; the
uninterrupted run (a checkpoint read as format 1 resumes exactly like the default run);
tracemalloc's peak (numpy reports its buffers to it) against the estimate.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import fake_mnist
from numpyvae import checkpoint as ck
from numpyvae.run.config import FORMAT_1_DEFAULTS
from numpyvae import evaluate, memory, sample, train
from numpyvae.model import VAE
from numpyvae.run.folder import RUN_FILES
from numpyvae.run.lock import LOCK_NAME
from test_train import QUICK, TESTS, assert_same_run, run

ROOT = str(Path(TESTS).parent)


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def message_lines(err):
    """stderr without tqdm's progress bar (redrawn with carriage returns)."""
    return [l for l in re.split(r"[\r\n]", err) if l.strip() and "batch" not in l]


def run_files(out):
    return sorted(f for f in RUN_FILES if (out / f).exists())


def spawn(out, *argv, prelude=""):
    """`python -m numpyvae.train` on the fake data in a subprocess, QUICK sizes."""
    code = fake_mnist.PRELUDE.format(tests=TESTS) + prelude + (
        f"sys.exit(main({[*QUICK, *argv, '--out', str(out)]!r}, cli=True))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for(path, proc):
    while not path.exists() and proc.poll() is None:
        proc.stdout.readline()                # a blocking read paces the loop, no sleeps
    assert proc.poll() is None, proc.communicate()


# ---------------------------------------------------------------------------- one writer

def test_two_trainings_started_together_leave_one_consistent_run(tmp_path):
    out = tmp_path / "run"
    procs = [spawn(out, "--epochs", "1", "--backend", "numpy", "--seed", str(s)) for s in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    refused = [err for code, err in results if code != 0][0]
    assert "in use by another numpyvae process" in refused or "already holds a run" in refused
    assert "Traceback" not in refused
    config = json.loads((out / "config.json").read_text())
    assert ck.load(out).config == config             # config.json from the same run


def test_a_running_training_refuses_every_other_writer(tmp_path, capsys):
    out = tmp_path / "run"
    proc = spawn(out, "--epochs", "50", "--batch-size", "4", "--backend", "numpy")
    try:
        wait_for(out / "checkpoint.npz", proc)
        needle = f"in use by another numpyvae process (PID {proc.pid}"
        assert train.main(["--resume", "--out", str(out), "--epochs", "60"]) == 1
        assert needle in capsys.readouterr().err
        assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 1
        assert needle in capsys.readouterr().err
        assert sample.main([str(out), "--out", str(out / "more.png")]) == 1
        assert needle in capsys.readouterr().err
        assert evaluate.main([str(out), "--k", "2", "--limit", "5",
                              "--json", str(out / "r.json")]) == 1
        assert needle in capsys.readouterr().err
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not (out / LOCK_NAME).exists() and not (out / "more.png").exists()
    assert ck.load(out).adam_t > 0


# ---------------------------------------------------------------------------- no dead ends

def _sigint_during_data_load(monkeypatch):
    real = fake_mnist.load

    def load(*a, **k):
        signal.raise_signal(signal.SIGINT)
        return real(*a, **k)
    monkeypatch.setattr(train.data, "load", load)


def _nan_in_first_epoch(monkeypatch):
    real = VAE.loss_and_grads

    def poisoned(self, x, eps, out=None, **objective):
        loss, grads = real(self, x, eps, out, **objective)
        return (float("nan") if len(x) > 1 else loss), grads
    monkeypatch.setattr(VAE, "loss_and_grads", poisoned)


def _disk_full_at_first_checkpoint(monkeypatch):
    def full(path, ckpt):
        raise OSError(28, "No space left on device", str(path))
    monkeypatch.setattr(train.ckpt_io, "save", full)


@pytest.mark.parametrize("failure,code", [(_sigint_during_data_load, 130),
                                          (_nan_in_first_epoch, train.EXIT_NONFINITE),
                                          (_disk_full_at_first_checkpoint, 1)])
@pytest.mark.parametrize("folder", ["made by the command", "the user's"])
def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_the_same_command(
        tmp_path, monkeypatch, capsys, failure, code, folder):
    out = tmp_path / "run"
    if folder == "the user's":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    argv = [*QUICK, "--epochs", "1", "--out", str(out)]
    failure(monkeypatch)
    assert train.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(message_lines(err)) == 1, err
    assert run_files(out) == [] and not (out / LOCK_NAME).exists()
    assert out.exists() == (folder == "the user's")
    monkeypatch.undo()
    fake_mnist.install(monkeypatch)
    assert train.main(["--resume", "--out", str(out)]) == 2
    assert "start it again with the same command" in capsys.readouterr().err
    assert train.main(argv) == 0
    assert run_files(out) == sorted(RUN_FILES)
    if folder == "the user's":
        assert (out / "notes.txt").read_text() == "mine"


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    """kill -9 inside the first epoch: the lock dies with the process, nothing is left."""
    out = tmp_path / "run"
    prelude = ("import os, signal; from numpyvae.model import VAE; real = VAE.loss_and_grads; "
               "n = [0]\n"
               "def step(self, x, *a, **k):\n"
               "    n[0] += len(x) > 1\n"
               "    if n[0] == 5: os.kill(os.getpid(), signal.SIGKILL)\n"
               "    return real(self, x, *a, **k)\n"
               "VAE.loss_and_grads = step; ")
    proc = spawn(out, "--epochs", "1", "--backend", "numpy", prelude=prelude)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert run_files(out) == []
    assert train.main([*QUICK, "--epochs", "1", "--backend", "numpy", "--out", str(out)]) == 0


def test_stale_temp_files_are_removed_and_the_users_files_kept(tmp_path):
    code, out = run(tmp_path, "--epochs", "1")
    for name in (".checkpoint.npz.99999999.tmp", ".metrics.csv.99999998.tmp", "notes.txt",
                 ".mine.99999997.tmp"):
        (out / name).write_bytes(b"x" * 1000)
    assert train.main(["--resume", "--out", str(out), "--epochs", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or "notes" in p.name) \
        == [".mine.99999997.tmp", "notes.txt"]


# ---------------------------------------------------------------------------- memory

@pytest.mark.parametrize("flag,value", [("--hidden-dim", 10**6), ("--samples", 10**9)])
def test_a_run_that_cannot_fit_is_refused_up_front(tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert train.main([*QUICK, flag, str(value), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: this run (") and f"{flag} {value}" in err
    assert "needs ≈ " in err and "this machine has" in err and "Traceback" not in err
    assert not out.exists()


def test_a_batch_larger_than_the_training_set_is_one_batch(tmp_path):
    code, out = run(tmp_path, "--epochs", "1", "--batch-size", str(10**12))
    assert code == 0 and ck.load(out).adam_t == 1                 # 1200 images, one step


def test_the_training_estimate_bounds_what_a_run_allocates(tmp_path, monkeypatch):
    """tracemalloc's peak over a whole run (numpy backend: every buffer is numpy's) stays under
    memory.training_bytes for the same sizes; the pictures are left out (matplotlib's own)."""
    monkeypatch.setattr("numpyvae.run.plots.draw_run", lambda *a, **k: True)
    sizes = dict(hidden_dim=64, latent_dim=8, batch_size=600, samples=3)
    tracemalloc.start()
    try:
        assert train.main(["--epochs", "1", "--backend", "numpy", "--hidden-dim", "64",
                           "--latent-dim", "8", "--batch-size", "600", "--samples", "3",
                           "--out", str(tmp_path / "run")]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = memory.training_bytes(1200, 300, 784, dtype="float32", **sizes)
    assert peak <= estimate, (peak, estimate)


def test_evaluate_takes_any_batch(run_dir_quick, capsys):
    assert evaluate.main([str(run_dir_quick), "--k", "4", "--limit", "30",
                          "--batch", str(10**12)]) == 0


@pytest.fixture
def run_dir_quick(tmp_path):
    code, out = run(tmp_path, "--epochs", "1")
    assert code == 0
    return out


# ---------------------------------------------------------------------------- signals

def test_sigterm_during_the_final_pictures_is_a_clean_stop(tmp_path):
    out = tmp_path / "run"
    prelude = ("import os, signal; import numpyvae.run.plots as P; real = P.reconstructions\n"
               "def slow(*a, **k):\n"
               "    os.kill(os.getpid(), signal.SIGTERM)\n"
               "    return real(*a, **k)\n"
               "P.reconstructions = slow; ")
    proc = spawn(out, "--epochs", "1", prelude=prelude)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "--resume" in err
    assert {p.name for p in out.glob("*.png")} == {"elbo.png", "reconstructions.png"}
    assert train.main(["--resume", "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == {"elbo.png", "reconstructions.png",
                                                   "samples.png", "latent.png"}


@pytest.mark.parametrize("module", ["numpy", "tqdm"])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, module):
    """KeyboardInterrupt raised by an import hook the moment `module` is first imported, as
    `python -m numpyvae.train` loads its libraries: deterministic, no timing. sys.argv[0] is
    "-m" while -m locates the module (and imports its package), as CPython sets it."""
    code = textwrap.dedent(f"""
        import runpy, sys
        class Hook:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r}:
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Hook())
        sys.argv = ["-m", "--out", {str(tmp_path / "run")!r}]
        runpy.run_module("numpyvae.train", run_name="__main__", alter_sys=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 130 and done.stderr.strip() == "interrupted", done.stderr
    assert not (tmp_path / "run").exists()


def test_sigint_during_start_up_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    _sigint_during_data_load(monkeypatch)
    out = tmp_path / "runs" / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted (SIGINT) before training began") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- smaller

def test_config_json_never_records_fewer_epochs_than_the_run_has(tmp_path):
    code, out = run(tmp_path, "--epochs", "2")
    assert train.main(["--resume", "--out", str(out), "--epochs", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def rewrite_config(out, change):
    path = out / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    config = json.loads(arrays["config_json"].tobytes())
    version = change(config)
    arrays["config_json"] = np.frombuffer(json.dumps(config).encode(), np.uint8)
    if version:
        arrays["format_version"] = np.array(version)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_setting_missing_from_the_checkpoint_is_refused_not_defaulted(tmp_path, capsys):
    code, out = run(tmp_path, "--epochs", "1", "--lr", "0.003")
    rewrite_config(out, lambda c: c.pop("lr") and None)          # format 2, without lr
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert "configuration lacks lr" in err and str(out / "checkpoint.npz") in err


def test_a_format_1_checkpoint_resumes_as_the_notebooks_run(tmp_path):
    """Oracle: the uninterrupted default run. A format-1 checkpoint has none of the later
    settings; read as the notebook's values, it continues bit for bit like the default run."""
    assert run(tmp_path, "--epochs", "2", name="full")[0] == 0
    assert run(tmp_path, "--epochs", "1", name="old")[0] == 0
    rewrite_config(tmp_path / "old", lambda c: [c.pop(k) for k in FORMAT_1_DEFAULTS] and 1)
    assert train.main(["--resume", "--out", str(tmp_path / "old"), "--epochs", "2"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "old")


def test_limit_1_trains_draws_and_resumes(tmp_path):
    code, out = run(tmp_path, "--epochs", "1", "--limit", "1")
    assert code == 0 and (out / "latent.png").stat().st_size > 0
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0


def test_a_checkpoint_for_other_images_is_one_line_everywhere(tmp_path, capsys):
    c = ck.load(run(tmp_path, "--epochs", "1")[1])
    model = VAE(30, 16, 4, seed=0)
    c.params, c.config = dict(model.params), dict(c.config, x_dim=30)
    c.adam_m = c.adam_v = np.zeros(model.num_params, np.float32)
    bad = tmp_path / "bad.npz"
    ck.save(bad, c)
    assert evaluate.main([str(bad), "--k", "2"]) == 1
    assert sample.main([str(bad), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("takes 30 pixels per image") == 2 and "Traceback" not in err


def test_sigint_while_the_lock_is_taken_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The signal lands inside RunLock.acquire, between flock and its return (the race the
    lock's release now covers): one line, status 130, and no folder or lock file left."""
    import fcntl
    real = fcntl.flock

    def flock_then_signal(fd, op):
        real(fd, op)
        monkeypatch.setattr(fcntl, "flock", real)
        os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(fcntl, "flock", flock_then_signal)
    out = tmp_path / "runs" / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 130
    assert capsys.readouterr().err.startswith("interrupted (SIGINT) before training began")
    assert not (tmp_path / "runs").exists()
