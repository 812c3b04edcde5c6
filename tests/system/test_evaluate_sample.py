"""`python -m numpyvae.evaluate` and `python -m numpyvae.sample` on a short synthetic run."""
import os
import tracemalloc

import numpy as np
import pytest

import fake_mnist
from numpyvae import evaluate, memory, sample, train
from numpyvae.errors import UsageError
from numpyvae.run.lock import RunLock


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    fake_mnist.install(mp)
    out = tmp_path_factory.mktemp("eval") / "run"
    assert train.main(["--hidden-dim", "16", "--latent-dim", "3", "--epochs", "2",
                       "--out", str(out)]) == 0
    yield out
    mp.undo()


def test_evaluate_prints_both_numbers_with_their_settings(run_dir, capsys):
    assert evaluate.main([str(run_dir), "--k", "64", "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert "test split, 40 images, threshold binarization" in out
    lines = {l.split()[0]: l for l in out.splitlines()[1:]}
    neg_elbo = float(lines["−ELBO"].split()[1])
    ll = float(out.split("k=64")[1].split()[0])
    assert "nats/image" in lines["−ELBO"]
    # L_64 ≥ ELBO in expectation; both are estimates over 40 images (one ε each for the
    # ELBO), whose noise here is ~0.1 nat (measured: L_64 moves by 0.05 across seeds), so 0.5
    # nat of slack and no more.
    assert -ll <= neg_elbo + 0.5


def test_evaluate_says_how_long_it_will_take_before_it_starts(run_dir, capsys, monkeypatch):
    """Known wording: the forecast line, and the quick estimate's flags once the forecast is
    long (here forced: each image·sample said to cost a second)."""
    assert evaluate.main([str(run_dir), "--k", "64", "--limit", "40"]) == 0
    err = capsys.readouterr().err
    assert "log p(x) with k=64 on 40 images:" in err and "--k 100 --limit 1000" not in err
    clock = iter(range(0, 10**9, 1000))                  # every call of the clock: +1000 s
    monkeypatch.setattr(evaluate.time, "perf_counter", lambda: next(clock))
    assert evaluate.main([str(run_dir), "--k", "64", "--limit", "40"]) == 0
    assert "a quick estimate: --k 100 --limit 1000" in capsys.readouterr().err


def test_evaluate_bad_checkpoint(tmp_path, capsys):
    assert evaluate.main([str(tmp_path)]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_evaluate_checks_json_before_evaluating(run_dir, tmp_path, capsys, monkeypatch):
    """Oracle: known message — a --json folder that does not exist is refused in one line before
    the importance sampling (minutes at k = 5000) starts, not after it."""
    monkeypatch.setattr(evaluate, "log_likelihood",
                        lambda *a: pytest.fail("evaluated before --json was checked"))
    assert evaluate.main([str(run_dir), "--k", "5", "--limit", "5",
                          "--json", str(tmp_path / "no" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_evaluate_prints_its_numbers_even_when_json_cannot_be_written(run_dir, tmp_path,
                                                                       capsys, monkeypatch):
    """Oracle: known behaviour — minutes of evaluation are never lost to a failed --json write:
    the numbers are on stdout before the write is tried."""
    def fail(path, result):
        raise UsageError(f"cannot write --json {path}: No space left on device")
    monkeypatch.setattr(evaluate, "write_json", fail)
    assert evaluate.main([str(run_dir), "--k", "5", "--limit", "5",
                          "--json", str(tmp_path / "r.json")]) == 2
    out, err = capsys.readouterr()
    assert "log p(x) ≈ L_k, k=5" in out and "active units" in out
    assert "No space left on device" in err


def test_sample_and_interpolate(run_dir, tmp_path):
    assert sample.main([str(run_dir), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sample.main([str(run_dir), "--interpolate", "--between", "3", "7",
                        "--out", str(tmp_path / "i.png")]) == 0
    assert (tmp_path / "i.png").stat().st_size > 0


def test_sample_bad_arguments(run_dir, tmp_path, capsys):
    assert sample.main([str(run_dir), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "expected a .png" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample.main([str(run_dir), "--n", "0", "--out", str(tmp_path / "x.png")])
    assert sample.main([str(run_dir), "--interpolate", "--between", "0", "9999",
                        "--out", str(tmp_path / "x.png")]) == 2       # the fake split has 300
    assert sample.main([str(run_dir), "--out", str(tmp_path / "no" / "such" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------- bounded memory

def read_png(path):
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im)


def test_chunked_samples_are_the_one_shot_draw(run_dir, tmp_path):
    """Oracle: θ of z = default_rng(seed).standard_normal((n, Z)) decoded in one call, as the
    picture's bytes (255 − round(255 θ)). 1500 images: above plots.FIGURE_MAX_IMAGES, so the
    grid is pixel for pixel, decoded in two chunks. Tolerance 1 grey level: a product over
    fewer rows may round differently in float32's last bit, which can move a pixel across a
    rounding boundary; a wrong draw order or misplaced image is off by tens of levels."""
    n, out = 1500, tmp_path / "s.png"
    assert sample.main([str(run_dir), "--n", str(n), "--seed", "3", "--out", str(out)]) == 0
    model, _ = evaluate.load_model(run_dir)
    theta = model.decode(np.random.default_rng(3).standard_normal((n, model.latent_dim)))
    cols = 39                                                         # ceil(sqrt(1500))
    expected = np.full((39 * 28, cols * 28), 255, np.int64)
    for i, t in enumerate(theta):
        r, c = divmod(i, cols)
        expected[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = 255 - np.rint(t * 255).reshape(28, 28)
    got = read_png(out).astype(np.int64)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1


def test_sample_of_100000_images_needs_only_the_picture(run_dir, tmp_path):
    """Oracle: tracemalloc's peak (numpy reports its buffers) against the picture itself, one
    byte per pixel (316 × 317 cells of 28² pixels ≈ 79 MB), plus 40 MB for one chunk of 1024
    decoded images; 100,000 decoded float64 images alone would be 627 MB."""
    out = tmp_path / "many.png"
    tracemalloc.start()
    try:
        code = sample.main([str(run_dir), "--n", "100000", "--out", str(out)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0
    assert read_png(out).shape == (316 * 28, 317 * 28)          # 316 rows of 317
    assert peak < 316 * 317 * 28 * 28 + 40e6


@pytest.mark.parametrize("argv", [["--n", str(sample.MAX_IMAGES)],
                                  ["--interpolate", "--steps", str(sample.MAX_STEPS)]])
def test_a_picture_that_cannot_fit_is_refused_up_front(run_dir, tmp_path, capsys, monkeypatch,
                                                       argv):
    """Known message: the largest picture the flags allow, on a machine said to have 100 MB."""
    monkeypatch.setattr(memory, "available_memory", lambda: 100 * 2**20)
    assert sample.main([str(run_dir), *argv, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {argv[-2]} {argv[-1]} needs ≈ ") and "this machine has" in err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_a_long_interpolation_wraps_into_rows(run_dir, tmp_path):
    out = tmp_path / "line.png"
    assert sample.main([str(run_dir), "--interpolate", "--steps", "1100", "--out", str(out)]) == 0
    assert read_png(out).shape == (55 * 28, 20 * 28)                 # 1100 = 55 rows of 20


def test_the_line_is_linspaced(run_dir):
    """Oracle: np.linspace(0, 1, S), which the one-shot interpolation used."""
    mu0, mu1 = np.array([1.0, -2.0, 0.5]), np.array([-3.0, 4.0, 2.5])
    t = np.linspace(0, 1, 7)[:, None]
    points = sample.line(mu0, mu1, 7)
    assert np.array_equal(np.concatenate([points(0, 3), points(3, 7)]), (1 - t) * mu0 + t * mu1)


def test_sample_into_a_folder_that_is_training_is_refused(run_dir, capsys):
    with RunLock(run_dir):
        assert sample.main([str(run_dir), "--out", str(run_dir / "more.png")]) == 1
    err = capsys.readouterr().err
    assert f"PID {os.getpid()}" in err and not (run_dir / "more.png").exists()


@pytest.mark.parametrize("command,flag,name", [
    (evaluate, "--json", "checkpoint.npz"), (evaluate, "--json", "metrics.csv"),
    (evaluate, "--json", ".numpyvae.lock"), (sample, "--out", "samples.png")])
def test_an_output_never_replaces_a_file_of_the_run(run_dir, capsys, command, flag, name):
    """Known message, and the file system: an output named like one of the run's own files is
    refused before any computation, and the run's files stay as they were."""
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    quick = ["--k", "2", "--limit", "5"] if command is evaluate else ["--n", "4"]
    assert command.main([str(run_dir), flag, str(run_dir / name), *quick]) == 2
    assert f"that is the run's own {name}" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_evaluate_never_writes_over_the_checkpoint_it_reads(run_dir, tmp_path, capsys):
    """A lone checkpoint file evaluated with --json naming that same file: refused, intact."""
    lone = tmp_path / "model.npz"
    lone.write_bytes((run_dir / "checkpoint.npz").read_bytes())
    assert evaluate.main([str(lone), "--json", str(lone), "--k", "2", "--limit", "5"]) == 2
    assert "that is the checkpoint being read" in capsys.readouterr().err
    assert lone.read_bytes() == (run_dir / "checkpoint.npz").read_bytes()


def test_sample_without_out_writes_into_the_run_folder(run_dir, capsys):
    """Known names, beside the checkpoint: sample-seed<seed>-n<n>.png, interpolation-<i>-<j>.png."""
    assert sample.main([str(run_dir), "--n", "9", "--seed", "2"]) == 0
    assert sample.main([str(run_dir), "--interpolate", "--between", "3", "4", "--steps", "5"]) == 0
    for name in ("sample-seed2-n9.png", "interpolation-3-4.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        (run_dir / name).unlink()

