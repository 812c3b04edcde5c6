"""A command's results never depend on its terminal, and every stop ends in one true line.

Oracles: the run folder (metrics.csv rows, the checkpoint's place), the JSON a command was
asked for, exit statuses, and the lines on stderr — under a pipe whose reader is gone, a full
device, closed descriptors and an ASCII terminal; signals delivered at fixed points (an
import, a kernel's compilation, a callback that swallows them), never by timing.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import fake_mnist
from helps import helps
from numpyvae import checkpoint as ck
from numpyvae import kernels, train
from test_reliability import ROOT, message_lines
from test_train import QUICK, TESTS


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def train_code(out, *argv, prelude=""):
    """A `python -c` program: `python -m numpyvae.train` on the fake data, QUICK sizes."""
    return fake_mnist.PRELUDE.format(tests=TESTS) + prelude + (
        f"sys.exit(main({[*QUICK, *argv, '--out', str(out)]!r}, cli=True))")


def epochs_done(out):
    return ck.load(out / "checkpoint.npz").epoch


def closed_pipe():
    """The write end of a pipe whose reader is gone (`| head -1` once head has exited)."""
    r, w = os.pipe()
    os.close(r)
    return w


UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}   # every print reaches the descriptor


# ---------------------------------------------------------------------------- the terminal

def test_a_closed_pipe_on_both_streams_never_stops_training(tmp_path):
    out = tmp_path / "run"
    w = closed_pipe()
    done = subprocess.run([sys.executable, "-c", train_code(out, "--epochs", "2")], stdout=w,
                          stderr=w, cwd=ROOT, env=UNBUFFERED, timeout=300)
    os.close(w)
    assert done.returncode == 0
    assert epochs_done(out) == 2 and (out / "latent.png").exists()


def test_a_full_stdout_and_a_closed_stderr_never_stop_training(tmp_path):
    out = tmp_path / "run"
    closed_stderr = ["sh", "-c", 'exec "$0" "$@" 2>&-', sys.executable]   # the shell's 2>&-
    with open("/dev/full", "w") as full:
        done = subprocess.run([*closed_stderr, "-c", train_code(out, "--epochs", "2")],
                              stdout=full, cwd=ROOT, env=UNBUFFERED, timeout=300)
    assert done.returncode == 0
    assert epochs_done(out) == 2


def test_ctrl_c_with_the_pipes_gone_still_writes_its_checkpoint_and_exits_130(tmp_path):
    """SIGINT at step 3 of epoch 1 while stdout and stderr lead nowhere: README promises a
    checkpoint of that step and the status 130."""
    out = tmp_path / "run"
    prelude = ("import os, signal; from numpyvae import model as M; real = M.VAE.train_step\n"
               "def step(self, *a, _n=[0], **k):\n"
               "    _n[0] += 1\n"
               "    if _n[0] == 3: os.kill(os.getpid(), signal.SIGINT)\n"
               "    return real(self, *a, **k)\n"
               "M.VAE.train_step = step; ")
    w = closed_pipe()
    done = subprocess.run([sys.executable, "-c", train_code(out, "--epochs", "2", prelude=prelude)],
                          stdout=w, stderr=w, cwd=ROOT, env=UNBUFFERED, timeout=300)
    os.close(w)
    assert done.returncode == 130
    saved = ck.load(out / "checkpoint.npz")
    assert (saved.epoch, saved.step_in_epoch) == (0, 3)
    assert train.main(["--resume", "--out", str(out)]) == 0 and epochs_done(out) == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        fake_mnist.install(mp)
        assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    return out


def evaluate_code(run, *argv):
    return ("import sys; sys.path.insert(0, {tests!r}); import fake_mnist, numpyvae.data; "
            "numpyvae.data.load = fake_mnist.load; from numpyvae.evaluate import main; "
            "sys.exit(main({argv!r}))").format(tests=TESTS, argv=[str(run), *argv])


def test_evaluate_into_a_closed_pipe_still_writes_its_json(trained, tmp_path):
    """`evaluate RUN --json E.json | head -1`: the numbers are computed once, so they land."""
    w = closed_pipe()
    path = tmp_path / "e.json"
    done = subprocess.run([sys.executable, "-c", evaluate_code(trained, "--k", "3", "--limit",
                                                               "10", "--json", str(path))],
                          stdout=w, stderr=w, cwd=ROOT, env=UNBUFFERED, timeout=300)
    os.close(w)
    assert done.returncode == 0
    assert json.loads(path.read_text())["k"] == 3


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_every_line_prints_on_a_terminal_without_unicode(trained, tmp_path, encoding):
    """−, ε, ≈, L₅₀₀₀ spelt in ASCII, not a UnicodeEncodeError: train, evaluate (whose JSON must
    be written) and --help, as a POSIX locale without coercion or PYTHONIOENCODING shows them."""
    env = {**os.environ, "PYTHONIOENCODING": encoding}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", train_code(out, "--epochs", "1")],
                          capture_output=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert b"train -ELBO" in done.stdout and b"Traceback" not in done.stderr

    path = tmp_path / "e.json"
    done = subprocess.run([sys.executable, "-c", evaluate_code(trained, "--k", "3", "--limit",
                                                               "10", "--json", str(path))],
                          capture_output=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert b"-ELBO" in done.stdout and b"log p(x) ~ L_k" in done.stdout and path.exists()

    _, found = helps(["numpyvae.train", "numpyvae.evaluate", "numpyvae.sample"], env=env)
    for module, (code, text) in found.items():
        assert code == "0" and text.startswith("usage: "), (module, code, text)


def test_the_terminal_oracle_is_not_vacuous(capsys):
    """Planted: a stream that fails every write. Terminal drops it and marks it lost; the plain
    stream raises, as print did before."""
    from numpyvae.run.cli import Terminal

    class Gone:
        encoding = "utf-8"

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    t = Terminal(Gone())
    assert t.write("epoch 1\n") == 8 and t.lost
    with pytest.raises(BrokenPipeError):
        print("epoch 1", file=Gone())


# ---------------------------------------------------------------------------- signals

@pytest.mark.parametrize("module, signum", [
    ("numpyvae.train", signal.SIGTERM), ("numpyvae.train", signal.SIGHUP),
    ("benchmarks.throughput", signal.SIGTERM), ("reference.train", signal.SIGHUP)])
def test_a_signal_while_the_command_starts_is_one_line(tmp_path, module, signum):
    """SIGTERM or SIGHUP delivered the moment numba is first imported, as `python -m <module>`
    loads its libraries (sys.argv[0] is "-m" while -m imports the package): 128 + signal and a
    line, not a silent death. The child starts with the signal's default disposition, as from
    an interactive shell (under `nohup` SIGHUP comes ignored, and the command rightly keeps
    it so: numpyvae/__init__.py)."""
    code = textwrap.dedent(f"""
        import os, runpy, signal, sys
        signal.signal({int(signum)}, signal.SIG_DFL)
        class Hook:
            def find_spec(self, name, path=None, target=None):
                if name == "numba":
                    os.kill(os.getpid(), {int(signum)})
        sys.meta_path.insert(0, Hook())
        sys.argv = ["-m", "--out", {str(tmp_path / "run")!r}]
        runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr.strip() == f"interrupted ({signal.Signals(signum).name})"
    assert not (tmp_path / "run").exists()


def ctrl_c_at_pass(n):
    """A numba event listener that sends the process SIGINT as compiler pass `n` starts: Ctrl-C
    in the middle of a compilation, at a fixed point. `passes` counts those begun."""
    from numba.core import event

    class CtrlCAtPass(event.Listener):

        passes = 0

        def on_start(self, ev):
            self.passes += 1
            if self.passes == n:
                signal.raise_signal(signal.SIGINT)

        def on_end(self, ev):
            pass
    return CtrlCAtPass()


def compile_with_ctrl_c(kernel, *args):
    """Call (and so compile) the jitted `kernel` with a Ctrl-C at its 5th compiler pass; the
    KeyboardInterrupt must come out of the call. Returns the listener."""
    from numba.core import event
    listener = ctrl_c_at_pass(5)
    with event.install_listener("numba:run_pass", listener):
        with pytest.raises(KeyboardInterrupt):
            kernel(*args)
    return listener


def test_a_signal_during_compilation_arrives_after_it():
    """Ctrl-C in the middle of numba's compiler (delivered from one of its passes): the
    KeyboardInterrupt comes once the kernel is compiled, and the kernel then works. Raised
    mid-compile it would be lost in an LLVM callback or leave numba half-done."""
    from numba import njit

    def twice(a):
        return 2 * a

    kernel = njit(twice)
    assert compile_with_ctrl_c(kernel, 1.5).passes > 5     # the compiler went on past it
    assert kernel.signatures and kernel(1.5) == 3.0


def test_the_compile_guard_oracle_is_not_vacuous():
    """Planted: the guard removed. The same Ctrl-C then lands mid-compile, and the kernel is
    left uncompiled."""
    from numba import njit
    from numba.core import event

    guard = next(l for l in event._registered["numba:compiler_lock"]
                 if isinstance(l, kernels._SignalsAfterCompiling))

    def thrice(a):
        return 3 * a

    kernel = njit(thrice)
    event.unregister("numba:compiler_lock", guard)
    try:
        compile_with_ctrl_c(kernel, 1.5)
    finally:
        event.register("numba:compiler_lock", guard)
    assert not kernel.signatures


def test_a_swallowed_signal_during_start_up_is_reported_as_such(tmp_path, monkeypatch, capsys):
    """A signal whose exception a callback swallowed (as ctypes does) during the kernels'
    warm-up: the run says it stopped before training and leaves nothing — never "checkpoint
    written" for a checkpoint that does not exist."""
    real = train.warm_up

    def warm_up(*a, **k):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass                                   # lost, as in a ctypes callback
        return real(*a, **k)

    monkeypatch.setattr(train, "warm_up", warm_up)
    out = tmp_path / "runs" / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted (SIGINT) before training began"), err
    assert "checkpoint written" not in err and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------- the kernel cache

def test_an_unwritable_kernel_cache_compiles_without_one(tmp_path):
    """numba finds no folder it may write its cache to (a read-only install and home): the
    kernels compile uncached, with one notice, and the run trains. (Planted by giving numba's
    cache no locator at all, which is what it meets then; a root user can write anywhere.)"""
    out = tmp_path / "run"
    prelude = "import numba.core.caching as C; C.CacheImpl._locator_classes = []\n"
    done = subprocess.run([sys.executable, "-c", prelude + train_code(out, "--epochs", "1")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    notes = [l for l in message_lines(done.stderr) if "cannot cache" in l]
    assert len(notes) == 1 and "NUMBA_CACHE_DIR" in notes[0], done.stderr
    assert epochs_done(out) == 1


# ---------------------------------------------------------------------------- smaller

@pytest.mark.parametrize("resume", [False, True])
def test_a_checkpoint_that_is_a_directory_gets_one_way_out(tmp_path, capsys, resume):
    out = tmp_path / "run"
    (out / "checkpoint.npz").mkdir(parents=True)
    argv = [*QUICK, "--out", str(out)] + (["--resume"] if resume else [])
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoint.npz is a directory, not a checkpoint" in err and "move it" in err, err
    assert ("--resume" in err) == resume           # only a resume is told to drop --resume
