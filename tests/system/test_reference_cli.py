"""The reference's commands (reference.train, .evaluate, .gradcheck) as numpyvae's are: bounded
flags, output paths checked before any work, Ctrl-C and failures in one line, and a run folder
that a stopped or failed reference run leaves as it found it.

Oracles: argparse's and run_command's exit statuses (2 usage, 1 error, 130 SIGINT) and their
one-line messages; the files in the run folder; the same command run again (it must succeed).
"""
import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import fake_mnist
import numpyvae.run.checkpoint
import numpyvae.data
from numpyvae.run.config import MAX_SEED
from numpyvae.run.lock import LOCK_NAME
from reference import evaluate, gradcheck, train
from test_train import TESTS

ROOT = os.path.dirname(TESTS)
SHIPPED = os.path.join(ROOT, "results", "burda2015-vae")
QUICK = ["--limit", "300", "--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100"]
STEPS = 3                                   # 300 images in batches of 100: steps per epoch


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def never_loaded(monkeypatch):
    """Loading data now fails the test: a request must be refused before it."""
    monkeypatch.setattr(numpyvae.data, "load",
                        lambda *a, **k: pytest.fail("data loaded before the request was checked"))


# ---------------------------------------------------------------------------- bounds

@pytest.mark.parametrize("command, argv, flag", [
    (evaluate, [SHIPPED, "--limit", "1", "--k", str(10**12)], "--k"),
    (evaluate, [SHIPPED, "--limit", "1", "--batch", str(10**12)], "--batch"),
    (evaluate, [SHIPPED, "--limit", str(10**12)], "--limit"),
    (evaluate, [SHIPPED, "--limit", "1", "--seed", str(10**52)], "--seed"),
    (gradcheck, ["--batch-size", str(10**12)], "--batch-size"),
    (train, ["--limit", str(10**12)], "--limit"),
])
def test_a_value_no_machine_could_use_is_one_argparse_line(command, argv, flag, capsys):
    """Oracle: argparse's usage error (exit 2) naming the flag and its range."""
    with pytest.raises(SystemExit) as stop:
        command.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: expected an integer from" in err, err


def test_a_seed_torch_cannot_take_is_refused_naming_the_flag(monkeypatch, capsys):
    """reference.train's --seed comes from numpyvae's settings, bounded by what
    torch.manual_seed takes (a uint64; numpy takes any seed). Oracle: argparse's one line
    naming --seed, before any data is loaded; the bound itself is accepted by torch."""
    never_loaded(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        train.main([*QUICK, "--seed", str(2**64)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --seed: expected an integer from 0 to " \
        f"{MAX_SEED:,}" in err, err
    import torch
    torch.manual_seed(MAX_SEED)                     # the bound is torch's own


@pytest.mark.parametrize("command, argv", [
    (train, [*QUICK, "--hidden-dim", str(10**6)]),
    (train, [*QUICK, "--batch-size", str(10**9), "--latent-dim", str(10**6)]),
    (gradcheck, ["--hidden-dim", str(10**6)]),
    (gradcheck, ["--samples", str(10**9)]),
    (gradcheck, ["--run", SHIPPED, "--samples", str(10**9)]),          # the run's network
    (gradcheck, ["--run", SHIPPED, "--batch-size", "10000", "--samples", str(10**7)]),
])
def test_a_network_no_machine_can_hold_is_refused_before_it_is_made(command, argv, monkeypatch,
                                                                     capsys):
    """Sizes within numpyvae's bounds that no memory holds. Oracle: exit 2 and
    numpyvae.run.memory's one line naming the flags, before data or the model (before: torch's
    overflow or allocation error, numpy's MemoryError, as tracebacks)."""
    never_loaded(monkeypatch)
    assert command.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "needs ≈" in line and argv[-2] in line and "use a smaller" in line, line


# ---------------------------------------------------------------------------- output paths

def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """Oracle: exit 2, one line naming the file, and the file as it was."""
    never_loaded(monkeypatch)
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    for out in (taken, taken / "run"):
        assert train.main([*QUICK, "--out", str(out)]) == 2
        line = one_line(capsys.readouterr().err)
        assert line == f"error: --out {out}: {taken} is not a folder; choose another --out"
    assert taken.read_text() == "mine"


def test_a_read_only_out_folder_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    """The folder's mode is 0555; as root, whom modes do not stop, the PermissionError a
    read-only folder gives is planted on its lock file, the first file the command creates.
    Oracle: exit 1, one line naming the folder and what to do; nothing loaded."""
    never_loaded(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:
        real = os.open

        def refused(path, flags, *a, **k):
            if os.path.dirname(os.fspath(path)) == str(out) and flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return real(path, flags, *a, **k)
        monkeypatch.setattr(os, "open", refused)
    assert train.main([*QUICK, "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (f"error: cannot write the run into {out}: Permission denied "
                    f"({out / LOCK_NAME}); this user cannot write there: choose another --out")
    out.chmod(0o755)
    assert list(out.iterdir()) == []


def test_a_lock_file_that_is_a_directory_says_what_to_do(tmp_path, capsys):
    """Oracle: exit 1, one line naming the lock path, what it is and what to do."""
    out = tmp_path / "run"
    (out / LOCK_NAME).mkdir(parents=True)
    assert train.main([*QUICK, "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(out / LOCK_NAME) in line and "directory" in line and "remove" in line, line


# ---------------------------------------------------------------------------- Ctrl-C, failures

def signal_at_step(monkeypatch, step, signum=signal.SIGINT):
    """The process sends itself `signum` right after Adam's step number `step` (1-based)."""
    import torch
    real, calls = torch.optim.Adam.step, [0]

    def step_then_signal(self, *a, **k):
        out = real(self, *a, **k)
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signum)
        return out
    monkeypatch.setattr(torch.optim.Adam, "step", step_then_signal)


def test_ctrl_c_after_the_first_epoch_keeps_the_finished_epochs(tmp_path, monkeypatch, capsys):
    """SIGINT in epoch 2, after epoch 1's checkpoint was written. reference.train cannot resume,
    but what it finished is kept: a run folder of one epoch that numpyvae.evaluate reads.
    Oracle: exit 130, one line saying what was kept and what to do, the folder's files."""
    out = tmp_path / "runs" / "torch"
    argv = [*QUICK, "--epochs", "3", "--out", str(out)]
    signal_at_step(monkeypatch, STEPS + 1)
    assert train.main(argv) == 130
    line = one_line(capsys.readouterr().err)
    assert line.startswith("interrupted (SIGINT) in epoch 2 of 3; the 1 finished epoch is kept "
                           f"in {out} ") and \
        str(out) in line and "choose another --out" in line, line
    assert numpyvae.run.checkpoint.load(out / "checkpoint.npz").epoch == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 2       # header + epoch 1
    monkeypatch.undo()
    fake_mnist.install(monkeypatch)
    assert train.main(argv) == 2                 # the same --out holds a run: refused, not lost
    assert "already holds a run" in one_line(capsys.readouterr().err)


def test_ctrl_c_in_the_first_epoch_leaves_nothing(tmp_path, monkeypatch, capsys):
    """SIGINT before the first checkpoint. Oracle: exit 130, one line, the folder it made gone,
    and the same command then trains to the end."""
    out = tmp_path / "runs" / "torch"
    argv = [*QUICK, "--epochs", "2", "--out", str(out)]
    signal_at_step(monkeypatch, 2)
    assert train.main(argv) == 130
    line = one_line(capsys.readouterr().err)
    assert line.startswith("interrupted (SIGINT) in epoch 1 of 2, before its first checkpoint") \
        and "run the same command to start again" in line, line
    assert not (tmp_path / "runs").exists()
    monkeypatch.undo()
    fake_mnist.install(monkeypatch)
    assert train.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.json",
                                                    "metrics.csv"]


def test_a_failed_write_keeps_what_was_whole(tmp_path, monkeypatch, capsys):
    """The disk fills at epoch 2's checkpoint, in a folder that existed before (with a file of
    the user's). Oracle: exit 1, one line naming the folder and the cause; the user's file and
    epoch 1's whole run folder are there (the atomic write left epoch 1's checkpoint whole)."""
    out = tmp_path / "torch"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    real, calls = numpyvae.run.checkpoint.save, [0]

    def full(path, ckpt):
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, ckpt)
    monkeypatch.setattr(numpyvae.run.checkpoint, "save", full)
    argv = [*QUICK, "--epochs", "2", "--out", str(out)]
    assert train.main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write the run into {out}: No space left on device") \
        and line.endswith("the disk is full: choose another --out"), line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "config.json",
                                                    "metrics.csv", "notes.txt"]
    assert numpyvae.run.checkpoint.load(out / "checkpoint.npz").epoch == 1


def test_a_failed_first_write_leaves_the_folder_as_it_was(tmp_path, monkeypatch, capsys):
    """The disk fills at epoch 1's checkpoint: nothing whole was written, so the folder holds
    only the user's file again, and the same command then succeeds."""
    out = tmp_path / "torch"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    real = numpyvae.run.checkpoint.save

    def full(path, ckpt):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(numpyvae.run.checkpoint, "save", full)
    argv = [*QUICK, "--epochs", "1", "--out", str(out)]
    assert train.main(argv) == 1
    capsys.readouterr()
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    monkeypatch.setattr(numpyvae.run.checkpoint, "save", real)
    assert train.main(argv) == 0


def hooked(module, argv, failing):
    """`python -m module argv` with KeyboardInterrupt raised by an import hook the moment
    `failing` is first imported (deterministic, no timing), as test_reliability does for
    numpyvae.train; on the fake data unless numpy is the one failing. sys.argv[0] is "-m"
    while -m locates the module, as CPython sets it."""
    fake = ("" if failing == "numpy" else
            f"sys.path.insert(0, {TESTS!r}); import fake_mnist, numpyvae.data; "
            "numpyvae.data.load = fake_mnist.load")
    code = textwrap.dedent(f"""
        import runpy, sys
        {fake}
        class Hook:
            def find_spec(self, name, path=None, target=None):
                if name == {failing!r}:
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Hook())
        sys.argv = ["-m", *{argv!r}]
        runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("module, argv, said", [
    ("reference.train", ["--epochs", "1"], "interrupted (SIGINT) before training began; nothing "
                                           "was written — run the same command to start again"),
    ("reference.evaluate", [SHIPPED, "--k", "5"], "interrupted"),
    ("reference.gradcheck", [], "interrupted"),
])
def test_ctrl_c_while_torch_loads_is_one_line(tmp_path, module, argv, said):
    """Oracle: exit 130 and one line on stderr (today torch loads at import, before
    run_command, and the KeyboardInterrupt is a traceback). With --out nothing is left."""
    if module == "reference.train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    done = hooked(module, argv, "torch")
    assert done.returncode == 130 and done.stderr.strip() == said, done.stderr
    assert not (tmp_path / "run").exists()


def test_ctrl_c_while_numpy_loads_is_one_line():
    """Oracle: exit 130 and numpyvae's "interrupted", as for `python -m numpyvae.train`."""
    done = hooked("reference.train", ["--epochs", "1"], "numpy")
    assert done.returncode == 130 and done.stderr.strip() == "interrupted", done.stderr


def test_weights_that_overflow_are_an_error_not_nan(tmp_path, capsys):
    """reference.evaluate of a checkpoint whose weights are 1e30 (as numpyvae.evaluate refuses
    it). Oracle: exit 1 and one line saying the result is not finite, no JSON written; and
    --json "" is refused before anything is computed."""
    import numpy as np
    ck = numpyvae.run.checkpoint.load(SHIPPED)
    bad = tmp_path / "bad.npz"
    params = {k: np.full_like(v, 1e30) for k, v in ck.params.items()}
    numpyvae.run.checkpoint.save(bad, numpyvae.run.checkpoint.Checkpoint(**{**ck.__dict__, "params": params}))
    assert evaluate.main([str(bad), "--k", "2", "--limit", "5"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "not a finite number" in line and "nan" not in capsys.readouterr().out, line
    out = tmp_path / "e.json"
    assert evaluate.main([str(bad), "--k", "2", "--limit", "5", "--json", str(out)]) == 1
    assert "not a finite number" in one_line(capsys.readouterr().err) and not out.exists()
    assert evaluate.main([str(bad), "--k", "2", "--limit", "5", "--json", ""]) == 2
    assert "an empty path" in one_line(capsys.readouterr().err)
