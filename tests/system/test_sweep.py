"""benchmarks/sweep.py validates and times the implementations over a grid, and writes its
JSON and picture.

Oracle: the same validation as tests/system/test_benchmark.py (a float64 NumPy run of each peer's
first steps); the picture is checked to be a PNG matplotlib reads back. torch.compile and jax
jit are left out here (both run end to end in test_benchmark.py): each new batch shape costs
torch.compile tens of seconds of C++, and jax scan-epoch compiles the same jax step.
"""
import json
from types import SimpleNamespace

import pytest
from matplotlib.image import imread

import fake_mnist
from benchmarks import peers, sweep

IMPLS = [n for n in peers.CPU_NAMES if n not in ("torch compile", "jax jit")]


def test_sweep_writes_json_and_png_on_a_two_point_grid(monkeypatch, tmp_path):
    fake_mnist.install(monkeypatch)
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    assert sweep.main(["--batch-sizes", "50,100", "--hidden-dims", "16", "--steps", "3",
                       "--epochs", "1", "--impls", ",".join(IMPLS), "--json", str(out),
                       "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    skipped = {s["impl"] for s in result["skipped"]}
    assert skipped <= {n for n in IMPLS if n.startswith(("torch", "jax"))}
    expected = [(n, b) for b in (50, 100) for n in IMPLS if n not in skipped]
    assert [(r["impl"], r["batch_size"]) for r in result["rows"]] == expected
    for r in result["rows"]:
        assert {"impl", "batch_size", "hidden_dim", "seconds_per_epoch",
                "images_per_s"} <= set(r)
        assert r["hidden_dim"] == 16 and r["steps"] == 3 and r["seconds_per_epoch"] > 0
        assert r["images_per_s"] == pytest.approx(1200 / r["seconds_per_epoch"])
    assert [(q["batch_size"], q["hidden_dim"]) for q in result["summary"]] == [(50, 16), (100, 16)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(png).shape
    assert width > height > 100


def test_steps_time_part_of_each_epoch():
    """--images sets the steps per batch size (at least 3, for validation; at most an epoch);
    --steps overrides it."""
    args = SimpleNamespace(steps=0, images=6144)
    assert [sweep.steps_for(b, args, 60000) for b in (16, 128, 2048, 8192, 60000)] == \
        [384, 48, 3, 3, 1]
    assert sweep.steps_for(2048, SimpleNamespace(steps=10, images=6144), 60000) == 10


def row(impl, seconds, epochs=None, H=200, B=16):
    return dict(impl=impl, hidden_dim=H, batch_size=B, seconds_per_epoch=seconds,
                epochs=epochs or [seconds])


def test_the_summary_divides_the_right_rows():
    """Oracle: the ratios worked by hand. The floors and numpyvae's NumPy path are never the
    fastest peer, even when faster than every peer (the planted case below); a missing row
    leaves its ratios None; a point without numpyvae is left out."""
    rows = [row("numpyvae numba", 2.0, [2.0, 3.0, 1.5]), row("numpyvae numpy", 0.1),
            row("torch eager", 5.0), row("jax scan-epoch", 3.0), row("jax jit", 4.0),
            row("gemm floor openblas", 1.25), row("gemm floor torch", 0.5),
            row("numpyvae numba", 4.0, B=32), row("torch eager", 6.0, B=32),
            row("jax jit", 1.0, B=64)]
    assert sweep.summary(rows) == [
        dict(hidden_dim=200, batch_size=16, numpyvae=2.0, peer="jax scan-epoch",
             peer_seconds=3.0, lead=1.5, vs_floor=1.6, bound=2.4, spread=2.0),
        dict(hidden_dim=200, batch_size=32, numpyvae=4.0, peer="torch eager",
             peer_seconds=6.0, lead=1.5, vs_floor=None, bound=None, spread=1.0)]
    alone = sweep.summary([row("numpyvae numba", 2.0), row("gemm floor openblas", 1.0)])
    assert alone[0]["peer"] is None and alone[0]["lead"] is None and alone[0]["bound"] is None
