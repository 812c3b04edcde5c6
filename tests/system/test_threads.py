"""The BLAS's threads (numpyvae/threads.py, --blas-threads): chosen once per run, recorded,
kept on resume.

Oracles: threadpoolctl's own report of the pool's size (inside and after `limited`); a step
whose duration is known for each pool size (`choose` must take the faster count, and the
reversed twin the other one); the run's files (config.json and the checkpoint record the count)
and the pool's size seen from inside training.
"""
import json

import numpy as np
import pytest

import fake_mnist
from numpyvae import checkpoint as ck
from numpyvae import threads, train
from numpyvae.threads import choose           # the real one: conftest.py replaces it per test

QUICK = ["--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100", "--limit", "300"]

needs_a_pool = pytest.mark.skipif(not threads.controllable() or threads.pool_size() < 2,
                                  reason="numpy's BLAS has no thread pool of 2 or more to size")


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def test_candidates_halve_down_to_one():
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [2, 1]
    assert threads.candidates(6) == [6, 3, 1]
    assert threads.candidates(16) == [16, 8, 4, 2, 1]


@needs_a_pool
def test_limited_sizes_the_pool_and_puts_it_back():
    size = threads.pool_size()
    with threads.limited(1):
        assert threads.pool_size() == 1
    assert threads.pool_size() == size
    with threads.limited(None):                  # a format-2 run's: as the environment made it
        assert threads.pool_size() == size


@pytest.fixture
def clock(monkeypatch):
    """threads' clock, advanced only by the steps: each takes a known time for each pool size,
    as the oracle of `choose`, whatever the machine's load."""
    now = [0.0]
    monkeypatch.setattr(threads.time, "perf_counter", lambda: now[0])

    def step_taking(seconds_by_size):
        def step():
            now[0] += seconds_by_size[threads.pool_size()]
        return step
    return step_taking


@needs_a_pool
def test_choose_takes_the_faster_count_and_ties_go_to_fewer_threads(clock):
    """Known durations 6 ms and 2 ms, each way round (the reversed case is the planted error:
    a choice that ignored the timings would get one of the two wrong)."""
    n, seconds = choose(clock({2: 0.006, 1: 0.002}), [2, 1])
    assert n == 1 and seconds == pytest.approx({2: 0.006, 1: 0.002})
    n, seconds = choose(clock({2: 0.002, 1: 0.006}), [2, 1])
    assert n == 2 and seconds == pytest.approx({2: 0.002, 1: 0.006})
    assert choose(clock({2: 0.002, 1: 0.0021}), [2, 1])[0] == 1       # within 5%: fewer
    assert choose(clock({2: 0.002, 1: 0.0022}), [2, 1])[0] == 2


def test_the_flag_takes_auto_or_a_count(capsys):
    parse = train.build_parser().parse_args
    assert parse(["--blas-threads", "auto"]).blas_threads == "auto"
    assert parse(["--blas-threads", "3"]).blas_threads == 3
    for bad in ("0", "-1", "two", "1.5", "1_0", "5000"):
        with pytest.raises(SystemExit):
            parse(["--blas-threads", bad])
        assert "argument --blas-threads: expected 'auto' or an integer from 1 to 4,096" in \
            capsys.readouterr().err


def pool_sizes_in_training(monkeypatch):
    """The pool's size each time training starts (train._run), collected."""
    seen, real = [], train._run

    def spy(*a, **k):
        seen.append(threads.pool_size())
        return real(*a, **k)
    monkeypatch.setattr(train, "_run", spy)
    return seen


def recorded(out):
    return (json.loads((out / "config.json").read_text())["blas_threads"],
            ck.load(out / "checkpoint.npz").config["blas_threads"])


@needs_a_pool
def test_a_count_is_recorded_and_a_resumed_run_trains_with_it(tmp_path, monkeypatch, capsys):
    seen = pool_sizes_in_training(monkeypatch)
    size = threads.pool_size()
    out = tmp_path / "run"
    assert train.main([*QUICK, "--blas-threads", "1", "--epochs", "1", "--out", str(out)]) == 0
    assert recorded(out) == (1, 1) and seen == [1] and threads.pool_size() == size
    assert train.main(["--resume", "--out", str(out), "--epochs", "2",
                       "--blas-threads", str(size)]) == 2
    assert f"--blas-threads {size} differs from the run's 1" in capsys.readouterr().err
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    assert "with the run's 1 BLAS thread" in capsys.readouterr().out
    assert seen == [1, 1] and recorded(out) == (1, 1)
    assert train.main(["--resume", "--out", str(out), "--epochs", "3",     # the default: the
                       "--blas-threads", "auto"]) == 0                     # run's own count
    assert seen == [1, 1, 1] and recorded(out) == (1, 1)


def test_auto_records_the_count_it_chose(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(threads, "controllable", lambda: True)
    monkeypatch.setattr(threads, "pool_size", lambda: 2)
    timed = []

    def fastest_is_one(step, counts, **kw):
        step()                                       # the probe's step runs as given
        timed.append(counts)
        return 1, {2: 0.009, 1: 0.003}
    monkeypatch.setattr(threads, "choose", fastest_is_one)
    monkeypatch.setattr(threads, "limited", lambda n: __import__("contextlib").nullcontext())
    out = tmp_path / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    assert timed == [[2, 1]] and recorded(out) == (1, 1)
    assert "BLAS threads: 1 (2: 9.00, 1: 3.00 ms for a training step, timed now" in capsys.readouterr().out


def test_the_probe_leaves_the_run_as_it_would_be(tmp_path, monkeypatch):
    """Oracle: the same run with the count given. The probe trains a model of its own, so a run
    that chose 2 threads by timing equals one told --blas-threads 2 bit for bit."""
    monkeypatch.setattr(threads, "controllable", lambda: True)
    monkeypatch.setattr(threads, "pool_size", lambda: 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "limited", lambda n: __import__("contextlib").nullcontext())

    def probe_then_two(step, counts, **kw):
        for _ in range(3):
            step()
        return 2, {2: 0.001, 1: 0.002}
    monkeypatch.setattr(threads, "choose", probe_then_two)
    a, b = tmp_path / "auto", tmp_path / "two"
    assert train.main([*QUICK, "--epochs", "2", "--out", str(a)]) == 0
    assert train.main([*QUICK, "--epochs", "2", "--blas-threads", "2", "--out", str(b)]) == 0
    ca, cb = ck.load(a / "checkpoint.npz"), ck.load(b / "checkpoint.npz")
    assert all(np.array_equal(ca.params[k], cb.params[k]) for k in ca.params)
    assert ca.rng_state == cb.rng_state and ca.history["test_neg_elbo"] == cb.history["test_neg_elbo"]


def test_more_threads_than_cores_are_refused(tmp_path, monkeypatch, capsys):
    """3 BLAS threads on 2 cores ran 200 s epochs, 64 about 700 times slower, accepted without
    a word. Oracle: exit 2 and one line naming the flag, the cores and what to ask for, before
    anything is made or read; the cores' own count passes."""
    from numpyvae import evaluate
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    out = tmp_path / "run"
    for command, argv in ((train.main, [*QUICK, "--epochs", "1", "--out", str(out)]),
                          (evaluate.main, [str(tmp_path / "none")])):
        assert command([*argv, "--blas-threads", "3"]) == 2
        assert capsys.readouterr().err == (
            "error: --blas-threads 3: this process can run on 2 cores, and more BLAS threads "
            "than cores wait on each other at every product (3 threads on 2 cores made a 2 s "
            "epoch take 200 s); use --blas-threads 2 or fewer, or auto\n")
    assert not out.exists()
    assert threads.too_many(2) is None and threads.usable_cores() == 2


def test_the_cores_are_this_process_s(monkeypatch):
    """Known values: the affinity's count, lowered to a cgroup quota rounded up."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    real_open = open

    def cpu_max(quota):
        def opened(path, *a, **k):
            if path == "/sys/fs/cgroup/cpu.max":
                return __import__("io").StringIO(quota)
            return real_open(path, *a, **k)
        return opened
    for quota, cores in (("max 100000\n", 4), ("150000 100000\n", 2), ("50000 100000\n", 1),
                         ("800000 100000\n", 4)):
        monkeypatch.setattr("builtins.open", cpu_max(quota))
        assert threads.usable_cores() == cores, quota


@needs_a_pool
def test_a_run_resumed_on_fewer_cores_trains_on_them(tmp_path, monkeypatch, capsys):
    """A run recorded with 2 threads, resumed where this process can run on 1 core. Oracle:
    the pool's size seen from inside training, the lines, the records (the setting as it was,
    the arithmetic as it ran)."""
    seen = pool_sizes_in_training(monkeypatch)
    out = tmp_path / "run"
    assert train.main([*QUICK, "--blas-threads", "2", "--epochs", "1", "--out", str(out)]) == 0
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    capsys.readouterr()
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert seen == [2, 1] and recorded(out) == (2, 2)
    assert "BLAS threads: 1, not the run's 2: this process can run on 1 core, and more threads " \
        "than cores wait on each other; float32 results differ in their last bits from 2's" \
        in printed and "BLAS threads 2 → 1" in printed
    assert [e["blas_threads"] for e in json.loads((out / "config.json").read_text())[
        "arithmetic"]] == [2, 1]


def test_a_format_2_run_resumes_with_the_environments_threads(tmp_path, monkeypatch, capsys):
    """Known value: a run recorded before --blas-threads trained with the pool as the
    environment made it, and resumes with it (None: `limited` leaves the pool alone)."""
    out = tmp_path / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    c = ck.load(out / "checkpoint.npz")
    del c.config["blas_threads"]
    monkeypatch.setattr(ck, "FORMAT_VERSION", 2)
    ck.save(out / "checkpoint.npz", c)
    monkeypatch.undo()
    fake_mnist.install(monkeypatch)
    asked = []
    real = threads.limited
    monkeypatch.setattr(threads, "limited", lambda n: (asked.append(n), real(n))[1])
    assert train.main(["--resume", "--out", str(out), "--epochs", "3", "--blas-threads", "1"]) == 2
    assert "differs from the run's threads as the environment makes them" in \
        capsys.readouterr().err
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    assert asked == [None] and recorded(out) == (None, None)


@needs_a_pool
def test_evaluate_runs_log_p_x_with_the_count_and_records_it(tmp_path, monkeypatch):
    """Oracle: the pool's size and the workers seen from inside the evaluation's log p(x),
    and its JSON: the count's workers fill the pool (size // count)."""
    from numpyvae import evaluate
    out = tmp_path / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0
    seen, real = [], evaluate.log_likelihood
    monkeypatch.setattr(evaluate, "log_likelihood", lambda *a, **k: (
        seen.append((threads.pool_size(), k["workers"])), real(*a, **k))[1])
    size = threads.pool_size()
    args = [str(out), "--k", "5", "--limit", "20"]
    assert evaluate.main([*args, "--blas-threads", "1", "--json", str(tmp_path / "1.json")]) == 0
    assert set(seen) == {(1, size)} and threads.pool_size() == size
    result = json.loads((tmp_path / "1.json").read_text())
    assert (result["blas_threads"], result["workers"]) == (1, size)
    seen.clear()
    assert evaluate.main([*args, "--json", str(tmp_path / "auto.json")]) == 0   # conftest: size
    assert set(seen) == {(size, 1)}
    result = json.loads((tmp_path / "auto.json").read_text())
    assert (result["blas_threads"], result["workers"]) == (size, 1)


@needs_a_pool
def test_evaluate_log_p_x_on_workers_is_one_workers_bit_for_bit(tmp_path, monkeypatch):
    """Oracle: the same evaluation with its workers forced to one (threads.workers): with one
    BLAS thread on a pool of two or more, the workers change no bit of log p(x). Blocks of 40
    rows, so that 5 samples × 20 images make three blocks to share. Planted: workers that
    lose the last block of each chunk (its rows keep the previous chunk's numbers) differ."""
    from numpyvae import evaluate, fused
    monkeypatch.setattr(fused, "BLOCK_ROWS", 40)
    out = tmp_path / "run"
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 0

    def log_px(name, count):
        assert evaluate.main([str(out), "--k", "5", "--limit", "20", "--blas-threads",
                              str(count), "--json", str(tmp_path / name)]) == 0
        result = json.loads((tmp_path / name).read_text())
        return result["log_px"], result["workers"]
    shared = log_px("shared.json", 1)
    real_workers, real_blocks = threads.workers, fused.blocks
    monkeypatch.setattr(threads, "workers", lambda count: 1)
    alone = log_px("alone.json", 1)
    assert shared[1] == threads.pool_size() and alone[1] == 1
    assert shared[0] == alone[0]
    monkeypatch.setattr(threads, "workers", real_workers)
    monkeypatch.setattr(fused, "blocks", lambda *a: real_blocks(*a)[:-1])
    assert log_px("planted.json", 1)[0] != alone[0]


@needs_a_pool
def test_evaluate_gives_the_runs_own_test_neg_elbo_bit_for_bit(tmp_path):
    """Oracle: the run's own last test −ELBO (its checkpoint's history, metrics.csv's number),
    computed by training under the run's count. evaluate's −ELBO must be that float, whatever
    count its log p(x) uses. Planted: the same evaluation under the pool's full size gives
    other bits, so the comparison can tell the counts apart."""
    from numpyvae import evaluate
    out = tmp_path / "run"
    assert train.main(["--hidden-dim", "200", "--batch-size", "100", "--limit", "300",
                       "--blas-threads", "1", "--epochs", "1", "--out", str(out)]) == 0
    want = ck.load(out / "checkpoint.npz").history["test_neg_elbo"][-1]
    size = threads.pool_size()
    path = tmp_path / "e.json"
    assert evaluate.main([str(out), "--k", "1", "--blas-threads", str(size),
                          "--json", str(path)]) == 0
    assert json.loads(path.read_text())["neg_elbo"] == want
    assert threads.pool_size() == size
    model, cfg = ck.load_model(out)
    images = evaluate.split_images(cfg, "test")
    with threads.limited(size):
        planted = evaluate.evaluate_test(model, images, cfg["seed"], cfg["binarize"])[0]
    assert planted != want
