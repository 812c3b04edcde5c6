"""`python -m numpyvae.evaluate` and `python -m numpyvae.sample` on a short synthetic run."""
import numpy as np
import pytest

import fake_mnist
from numpyvae import evaluate, sample, train


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


def test_evaluate_bad_checkpoint(tmp_path, capsys):
    assert evaluate.main([str(tmp_path)]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


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
    assert sample.main([str(run_dir), "--interpolate", "--between", "0", "99999",
                        "--out", str(tmp_path / "x.png")]) == 2
    assert sample.main([str(run_dir), "--out", str(tmp_path / "no" / "such" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
