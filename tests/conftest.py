import os

from hypothesis import HealthCheck, settings

# Parity examples run real matrix products; wall-clock deadlines would only add flakiness.
settings.register_profile("numpyvae", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "numpyvae"))


import pytest

from numpyvae import threads


@pytest.fixture(autouse=True)
def untimed_blas_threads(monkeypatch):
    """A run's --blas-threads auto times the machine (threads.choose), and the count changes
    float32 bits: two runs a test compares must not hang on the machine's load at that moment.
    So in-process runs take the first candidate, the pool's size, without timing;
    tests/system/test_threads.py imports the real one before this replaces it."""
    monkeypatch.setattr(threads, "choose", lambda step, counts, **kw: (counts[0], {}))
