"""The probe that forecasts an evaluation of log p(x) and chooses its BLAS threads: a few chunks
of the real computation, timed here and now (numpyvae/threads.py). Used by evaluate and by
benchmarks.throughput, so that the benchmark times numpyvae as evaluate runs it.
"""
import time

import numpy as np

from .. import backend as backends
from .. import threads
from ..likelihood import log_likelihood
from ..oracle.likelihood import ROWS

QUICK_K, QUICK_IMAGES = 100, 1000           # the quick look: --k 100 --limit 1000

# The probe that forecasts an evaluation and chooses its threads: PROBE_K samples of the first
# PROBE_IMAGES images, ROWS rows (a NumPy chunk; a quarter of a numba one).
PROBE_K = 200
PROBE_IMAGES = ROWS // PROBE_K


def probe(model, x, k, workers, probe_k=PROBE_K):
    """L_k of the images x with min(k, probe_k) samples (PROBE_K × PROBE_IMAGES rows) on
    `workers` threads, from a Generator of its own, so that the evaluation's draws are
    untouched. Everything an evaluation does is in it — the draws, the workspaces, the
    log-sum-exp — so it forecasts well: chunk_step alone (the choice's) forecast 26 s for an
    evaluation of 31 s (Burda checkpoint, 1,000 images, Zen 3), this 31 s for 29–30 s."""
    log_likelihood(model, x, min(k, probe_k), np.random.default_rng(0), workers=workers)


# Untimed seconds before each count's timing when choosing it: after products on more threads,
# OpenBLAS's idle threads spin for about 0.1 s (its default thread timeout, 2^28 cycles) on
# the core a second worker would use. Timed after 0.03 s, one BLAS thread on two workers took
# 29–36 ms a chunk, after 0.15 s 24–25 ms, against 31–33 ms for two BLAS threads (Zen 3).
CHOOSE_WARM = 0.15


def chunk_step(model, x, k, probe_k=PROBE_K):
    """step() for threads.choose: the log weights of one chunk of L_k on the images x,
    min(k, probe_k) fixed samples each, on the workers of the BLAS count it runs under
    (threads.workers). Each worker count's workspaces are made at its first call and reused,
    as a long evaluation makes them once: making them is slower with more workers (their
    pages are first touched by several threads at once), and would mislead the choice."""
    eps = np.random.default_rng(0).standard_normal((min(k, probe_k), len(x), model.latent_dim),
                                                   dtype=model.dtype)
    made = {}

    def step():
        workers = threads.workers(threads.pool_size())
        if workers not in made:
            made[workers] = backends.log_weights(model, x, eps.shape[0] * len(x), workers)
        made[workers](model, x, eps)
    return step


def choose_threads(requested, model, x, k):
    """threads.resolve for log p(x): (count, line), `auto` timing chunk_step's chunk of the
    images x under each count (CHOOSE_WARM seconds untimed first). benchmarks.throughput
    chooses with it too, so that it times numpyvae as evaluate runs it."""
    return threads.resolve(requested, lambda: chunk_step(model, x, k),
                           f"{min(k, PROBE_K)} samples of {len(x)} images", CHOOSE_WARM)


def expected_time(model, x, k, n, workers, probe_k=PROBE_K):
    """A line saying how long L_k on n images will take here, and how to get a quick estimate
    when that is long: the cost is linear in images × samples, timed on the images x with
    probe_k samples (probe) — once to warm up (kernels, BLAS threads), once on the clock."""
    probe_k = min(k, probe_k)
    for _ in range(2):
        t0 = time.perf_counter()
        probe(model, x, probe_k, workers, probe_k)
    per_sample = (time.perf_counter() - t0) / (len(x) * probe_k)    # seconds per image·sample
    line = f"log p(x) with k={k} on {n:,} images: {duration(per_sample * n * k)} here"
    if per_sample * n * k > 60:
        quick = per_sample * min(n, QUICK_IMAGES) * min(k, QUICK_K)
        line += f"; a quick estimate: --k {QUICK_K} --limit {QUICK_IMAGES} ({duration(quick)})"
    return line


def duration(seconds):
    if seconds < 1:
        return "under a second"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"
