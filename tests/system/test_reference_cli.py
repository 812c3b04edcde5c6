"""The reference's commands (reference.train, .evaluate, .gradcheck) as numpyvae's are: bounded
flags, output paths checked before any work, Ctrl-C and failures in one line, and a run folder
that a stopped or failed reference run leaves as it found it.

Oracles: argparse's and run_command's exit statuses (2 usage, 1 error, 130 SIGINT) and their
one-line messages; the files in the run folder; the same command run again (it must succeed).
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fake_mnist
import numpyvae.data
from reference import evaluate, gradcheck
from test_train import TESTS

ROOT = os.path.dirname(TESTS)
SHIPPED = os.path.join(ROOT, "results", "burda2015-vae")


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
])
def test_a_value_no_machine_could_use_is_one_argparse_line(command, argv, flag, capsys):
    """Oracle: argparse's usage error (exit 2) naming the flag and its range."""
    with pytest.raises(SystemExit) as stop:
        command.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: expected an integer from" in err, err


@pytest.mark.parametrize("command, argv", [
    (gradcheck, ["--hidden-dim", str(10**12)]),
    (gradcheck, ["--samples", str(10**9)]),
])
def test_a_network_no_machine_can_hold_is_refused_before_it_is_made(command, argv, monkeypatch,
                                                                     capsys):
    """Sizes from numpyvae's shared settings that no memory holds. Oracle: exit 2 and
    numpyvae.memory's one line naming the flags, before data or the model (today: torch's
    overflow or allocation error, numpy's MemoryError, as tracebacks)."""
    never_loaded(monkeypatch)
    assert command.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "needs ≈" in line and argv[-2] in line and "use a smaller" in line, line


# ---------------------------------------------------------------------------- Ctrl-C

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
    ("reference.evaluate", [SHIPPED, "--k", "5"], "interrupted"),
    ("reference.gradcheck", [], "interrupted"),
])
def test_ctrl_c_while_torch_loads_is_one_line(module, argv, said):
    """Oracle: exit 130 and one line on stderr (today torch loads at import, before
    run_command, and the KeyboardInterrupt is a traceback)."""
    done = hooked(module, argv, "torch")
    assert done.returncode == 130 and done.stderr.strip() == said, done.stderr
