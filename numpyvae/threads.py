"""How many threads the matrix products use: the BLAS's thread pool, chosen once per run.

Every matrix product of a step is numpy's BLAS (OpenBLAS in numpy's wheels), which runs a pool
of threads, by default one per core. On a quiet machine two threads make a batch-128 epoch
1.6× faster than one. On a machine where another process keeps a core busy, OpenBLAS's threads
wait on each other at every product, and the same epoch becomes 4× slower than on the quiet
machine — slower than one thread, which does not notice the other process at all (Zen 3,
docs/speed.md). So a run can choose: `--blas-threads auto` (the default) times a few training
steps with each candidate count, here and now, and trains with the fastest (`choose`).

The count is a setting of the run, recorded in its checkpoint, because it changes float32
results in their last bits: OpenBLAS splits a product's work by thread count, and the sums
come out rounded differently (float64 moves by ~1e-16). A resumed run uses the recorded count
again, so it continues bit for bit as it would have without the stop; two new runs with the
same seed are identical when they train with the same count — `--blas-threads N` asks for one.
A run recorded before this setting existed (`None`) leaves the pool as the environment made it
(OPENBLAS_NUM_THREADS, or one thread per core), which is what it trained with.

Evaluation (`evaluate`) chooses its count the same way, for its log p(x), and then fills the
cores the count leaves: with one BLAS thread on a two-thread pool, two Python threads decode
separate blocks of each chunk (`workers`), which is about 13% faster than one worker with two
BLAS threads (Zen 3, docs/speed.md) and gives the numbers of one BLAS thread exactly.

The pool is reached through threadpoolctl, which knows OpenBLAS, MKL and BLIS. With a BLAS it
does not know (macOS Accelerate, say) there is nothing to choose: `controllable()` is False.
"""
import contextlib
import math
import os
import statistics
import time
from pathlib import Path

import numpy  # noqa: F401  (loads numpy's BLAS: threadpoolctl finds the libraries loaded)
from threadpoolctl import ThreadpoolController

AUTO = "auto"
MAX_THREADS = 4096                 # threads a run may ask for (OpenBLAS's own builds stop at 64–512)


_CONTROLLER = []
_FIRST_SIZE = []                   # the pool's size when the controller was made


def _controller():
    """threadpoolctl's controller of numpy's BLAS libraries (none found: an empty one), made
    once: finding the libraries walks everything the process has loaded."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
        _FIRST_SIZE.append(pool_size())
    return _CONTROLLER[0]


def numpy_blas():
    """threadpoolctl's controllers of the BLAS numpy calls: the libraries loaded from numpy's
    own folders (`numpy.libs`, `numpy/.dylibs`, where its wheels bundle one). Where there is none
    (a numpy built on the system's BLAS), the loaded ones that no other package bundles (not in
    a `*.libs` or `.dylibs` folder, as scipy's own copy is); none when numpy's BLAS is one
    threadpoolctl cannot see (Accelerate)."""
    libs = _controller().lib_controllers
    parts = [Path(lib.filepath or "").parts for lib in libs]
    ours = [lib for lib, p in zip(libs, parts)
            if any(part == "numpy" or part.startswith("numpy.") for part in p)]
    if ours:
        return ours
    return [lib for lib, p in zip(libs, parts)
            if not any(part.endswith(".libs") or part == ".dylibs" for part in p)]


def controllable():
    """True when numpy's BLAS has a thread pool this process can size."""
    return bool(_controller().lib_controllers)


def pool_size():
    """The BLAS's threads as they are now (the environment's, unless limited), or None: the
    fewest over the BLAS libraries loaded (numpy's, and scipy's own copy)."""
    libs = _controller().lib_controllers
    return min(lib.num_threads for lib in libs) if libs else None


def workers(count):
    """How many Python threads share an evaluation's blocks (fused.LogWeights) when each
    product runs on `count` BLAS threads: the pool's size as the environment made it (before
    any limit here) // count, at least 1; 1 for None. So the threads in use stay within what
    the environment allows, and `--blas-threads 1` on two cores decodes on two workers of one
    BLAS thread each. Workers move no bit: the numbers depend on `count` alone."""
    _controller()
    first = _FIRST_SIZE[0]
    if count is None or first is None:
        return 1
    return max(1, first // count)


def shortfall(n):
    """Inside `limited(n)`: None when the pool has n threads (or n is None), else the line
    saying it could not be given n and what follows."""
    have = pool_size()
    if n is None or have == n:
        return None
    return (f"BLAS threads: {have or 'as the environment made them'}, not {n} (this BLAS "
            f"cannot be given {n} here): float32 results differ in their last bits from {n}'s")


def usable_cores():
    """The cores this process can run on: its CPU affinity (taskset, a batch system's
    allocation), lowered to a cgroup v2 CPU quota (a container's --cpus, rounded up); 1 at
    least."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):                      # not on Linux
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            n = min(n, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


# More BLAS threads than cores wait on each other at every product (measured on a 2-core AMD
# EPYC, OPENBLAS_CORETYPE=Haswell: 3 threads on 2 cores made 200 s epochs of a ~2 s one, 64
# threads about 700 times slower).
def too_many(n, flag="--blas-threads"):
    """None when a count of n BLAS threads (or None, the environment's) fits the cores, else
    the refusal of `flag` n, in words."""
    cores = usable_cores()
    if n is None or n <= cores:
        return None
    return (f"{flag} {n}: this process can run on {cores} core{'s' * (cores != 1)}, and more "
            f"BLAS threads than cores wait on each other at every product (3 threads on 2 cores "
            f"made a 2 s epoch take 200 s); use {flag} {cores} or fewer, or auto")


def fitted(n):
    """(the count to run with, a line or None): a recorded count n as it is where it fits the
    cores, else the cores, with the line saying so (a run resumed on a smaller machine)."""
    cores = usable_cores()
    if n is None or n <= cores:
        return n, None
    return cores, (f"BLAS threads: {cores}, not the run's {n}: this process can run on {cores} "
                   f"core{'s' * (cores != 1)}, and more threads than cores wait on each other; "
                   f"float32 results differ in their last bits from {n}'s")


def candidates(size):
    """The counts `choose` times for a pool of `size` threads: size, size/2, … down to 1."""
    counts = []
    while size >= 1:                     # … 2, 1: halving an integer always ends at 1
        counts.append(size)
        size //= 2
    return counts


@contextlib.contextmanager
def limited(n):
    """The block's matrix products use n BLAS threads (None: as the environment made it).
    The pool is sized back on the way out."""
    if n is None:
        yield
        return
    controller = _controller()
    with controller.limit(limits=n):
        yield


def choose(step, counts, warm=0.03, timed=0.07, rounds=2):
    """(the fastest count, {count: median seconds per step}): `step()` timed under each count
    of `counts` (candidates()), `rounds` times in turn. Each timing is a block of steps under
    one count: `warm` seconds untimed, then `timed` seconds on the clock (at least one step
    each). Short alternating timings would mislead on a busy machine: a pool thread that slept
    while the other count ran wakes with the scheduler's credit for sleepers and outruns the
    competing process for a few milliseconds, before the two settle into sharing the core —
    measured at batch 16 beside a busy process, 3-step timings chose 2 threads (1.2 against
    1.6 ms a step) for an epoch that then ran at 6.2 ms a step. `step` must change nothing a
    run's numbers depend on. Ties (within 5%) go to fewer threads, which a later busy spell
    slows least."""
    with limited(counts[0]):
        step()                                         # compiles and allocates, untimed
    times = {n: [] for n in counts}
    for _ in range(rounds):
        for n in counts:
            with limited(n):
                t_warm = time.perf_counter() + warm
                step()
                while time.perf_counter() < t_warm:
                    step()
                t, k = time.perf_counter(), 0
                while k == 0 or time.perf_counter() - t < timed:
                    step()
                    k += 1
                times[n].append((time.perf_counter() - t) / k)
    medians = {n: statistics.median(ts) for n, ts in times.items()}
    best = min(medians.values())
    return min(n for n in counts if medians[n] <= 1.05 * best), medians


def resolve(requested, make_step, what="a training step", warm=0.03):
    """(count, line): `requested` when it is a count (or None), else ("auto") the fastest of
    candidates() for the step `make_step()` returns (choose, with `warm` seconds untimed
    before each timing), with a line saying what was timed (`what`: one step); None when
    numpy's BLAS has no pool this process can size. The step is made only when there is a
    choice to time."""
    if requested != AUTO:
        return requested, None
    if not controllable():
        return None, ("BLAS threads: as the environment made them (threadpoolctl finds no "
                      "thread pool in numpy's BLAS to size)")
    size = pool_size()
    if size == 1:
        return 1, "BLAS threads: 1 (the pool has one thread: nothing to choose)"
    n, seconds = choose(make_step(), candidates(size), warm=warm)
    return n, (f"BLAS threads: {n} ("
               + ", ".join(f"{k}: {1e3 * t:.2f}" for k, t in seconds.items())
               + f" ms for {what}, timed now; --blas-threads N fixes the count)")
