import os

from hypothesis import HealthCheck, settings

# Parity examples run real matrix products; wall-clock deadlines would only add flakiness.
settings.register_profile("numpyvae", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "numpyvae"))


import shutil
import signal
import tempfile

import pytest

from numpyvae import threads

_PYCACHE = []


def pytest_configure(config):
    """Ctrl-C, then the bytecode cache.

    Ctrl-C: a shell without job control starts a command put in the background (`cmd &`, as in
    `nohup bash .ci/run &`) with SIGINT ignored, and Python then installs no KeyboardInterrupt
    handler; the tests that send this process a Ctrl-C would see nothing happen. The suite's
    own process takes Python's default handler back; its children inherit the default.

    The suite starts about 200 Python subprocesses. Where PYTHONDONTWRITEBYTECODE is set
    (as on this project's machines), each of them compiles every module it imports from source: a
    `python -OO -m benchmarks.sweep --help` compiled torch and jax whole, 9.6 s of the suite's
    time each. The subprocesses get a bytecode cache of the session's own instead, in a
    temporary folder removed at the end (PYTHONPYCACHEPREFIX): nothing is written into the
    checkout or the environment, and each module is compiled once per session. Where the
    variable is not set, Python's own __pycache__ folders already do this; nothing changes."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and "PYTHONPYCACHEPREFIX" not in os.environ:
        _PYCACHE.append(tempfile.mkdtemp(prefix="numpyvae-tests-pycache-"))
        os.environ["PYTHONPYCACHEPREFIX"] = _PYCACHE[0]
        del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_unconfigure(config):
    for folder in _PYCACHE:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def untimed_blas_threads(monkeypatch):
    """A run's --blas-threads auto times the machine (threads.choose), and the count changes
    float32 bits: two runs a test compares must not hang on the machine's load at that moment.
    So in-process runs take the first candidate, the pool's size, without timing;
    tests/system/test_threads.py imports the real one before this replaces it."""
    monkeypatch.setattr(threads, "choose", lambda step, counts, **kw: (counts[0], {}))
