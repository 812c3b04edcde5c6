"""Training on the importance-weighted bound from the command line (`--objective iwae`,
`--estimator`, `--preset burda2015-iwae`).

Oracles: the uninterrupted run (a resumed iwae run equals it bit for bit); the model's own
train_step on the same batches and ε (what the command trains is the objective it names);
known values (the preset's settings, the names in metrics.csv and the progress line, an older
checkpoint read as the ELBO); known messages for the requests that cannot be carried out.
"""
import csv
import json

import numpy as np
import pytest

import fake_mnist
from numpyvae import checkpoint as ck
from numpyvae import train
from numpyvae.run.config import PRESETS
from reference import train as ref_train
from test_checkpoint import config_bytes, make, rewrite
from test_train import QUICK, assert_same_run


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def run(tmp_path, *argv, name="run"):
    out = tmp_path / name
    return train.main([*QUICK, "--out", str(out), *argv]), out


@pytest.mark.parametrize("estimator", ["standard", "stl", "dreg"])
def test_an_iwae_run_records_its_objective_and_resumes_exactly(tmp_path, capsys, estimator):
    iwae = ["--objective", "iwae", "--samples", "3", "--estimator", estimator,
            "--binarize", "dynamic", "--batch-size", "70"]
    assert run(tmp_path, "--epochs", "3", *iwae, name="full")[0] == 0
    assert run(tmp_path, "--epochs", "1", *iwae, name="cut")[0] == 0
    assert train.main(["--resume", "--out", str(tmp_path / "cut"), "--epochs", "3"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert (config["objective"], config["estimator"], config["samples"]) == ("iwae", estimator, 3)
    header = next(csv.reader(open(tmp_path / "full" / "metrics.csv")))
    assert header[:3] == ["epoch", "train_neg_iwae_k3", "test_neg_elbo"]
    out = capsys.readouterr().out
    assert f"IWAE K=3 ({estimator})" in out and "train −L_3 " in out


def first_epoch(tmp_path, cfg, objective, estimator):
    """The first epoch's mean training loss recomputed with model.train_step on the run's own
    batches and ε (its Training's model, Adam, Generator and batch taker)."""
    images = train.load_images(cfg)
    t = train.Training(cfg, tmp_path / "again", images)
    total, B, L, Z = 0.0, cfg.batch_size, cfg.samples, cfg.latent_dim
    order = train.data.epoch_order(len(images.train), t.rng)
    for step in range(t.steps):
        x = t.take_batch(order[step * B:(step + 1) * B])
        eps = t.rng.standard_normal((L, len(x), Z), dtype=t.model.dtype)
        total += t.model.train_step(x, eps, t.opt, objective, estimator)
    return total / len(images.train)


def test_the_command_trains_the_objective_it_names(tmp_path):
    """The first epoch's training loss, bit for bit, is the bound's with the estimator named;
    planted: the same recomputed on the ELBO differs."""
    argv = ["--objective", "iwae", "--samples", "4", "--estimator", "dreg", "--epochs", "1"]
    assert run(tmp_path, *argv)[0] == 0
    recorded = ck.load(tmp_path / "run" / "checkpoint.npz").history["train_neg_elbo"][0]
    cfg = train.Config(hidden_dim=16, latent_dim=4, batch_size=100, samples=4, epochs=1,
                       objective="iwae", estimator="dreg")
    assert first_epoch(tmp_path, cfg, "iwae", "dreg") == recorded
    assert first_epoch(tmp_path, cfg, "elbo", None) != recorded


def test_the_preset_is_burdas_iwae_row():
    assert PRESETS["burda2015-iwae"] == dict(PRESETS["burda2015"], objective="iwae", samples=5,
                                             estimator="standard")


def test_an_estimator_without_the_bound_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--estimator", "dreg", "--epochs", "1")[0] == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --estimator dreg is the gradient estimator of the "
                           "importance-weighted bound: add --objective iwae, or drop it")
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as e:                  # argparse's own refusal: K < 1
        run(tmp_path, "--objective", "iwae", "--samples", "0")
    assert e.value.code == 2
    assert "--samples: expected an integer from 1" in capsys.readouterr().err


def test_objective_and_estimator_are_kept_on_resume(tmp_path, capsys):
    assert run(tmp_path, "--objective", "iwae", "--samples", "2", "--epochs", "1")[0] == 0
    for flags, word in [(["--objective", "elbo"], "--objective elbo"),
                        (["--estimator", "stl"], "--estimator stl")]:
        code = train.main(["--resume", "--out", str(tmp_path / "run"), "--epochs", "2", *flags])
        assert code == 2 and word in capsys.readouterr().err


def test_an_older_checkpoint_reads_as_the_elbo(tmp_path):
    """Known value: a format-3 checkpoint, written before the objective was a setting, trained
    on the ELBO; a format-4 one that pairs the elbo objective with an estimator is refused."""
    path = tmp_path / "checkpoint.npz"
    ck.save(path, make())
    rewrite(path, lambda a: a.update(format_version=np.array(3),
                                     config_json=config_bytes(objective=..., estimator=...)))
    c = ck.load(path)
    assert (c.config["objective"], c.config["estimator"]) == ("elbo", None)
    rewrite(path, lambda a: a.update(format_version=np.array(4),
                                     config_json=config_bytes(objective="elbo", estimator="dreg")))
    with pytest.raises(ck.CheckpointError, match="an iwae run names its estimator"):
        ck.load(path)


def test_the_reference_trains_on_the_bound_too(tmp_path, capsys):
    """reference.train --objective iwae: the Torch Model on −L_K (reference.model.neg_iwae),
    recorded and named as numpyvae's run is; an estimator without the bound is refused."""
    out = tmp_path / "ref"
    argv = ["--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100", "--epochs", "1"]
    assert ref_train.main([*argv, "--objective", "iwae", "--samples", "3", "--estimator", "stl",
                           "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["objective"], config["estimator"], config["samples"]) == ("iwae", "stl", 3)
    assert next(csv.reader(open(out / "metrics.csv")))[1] == "train_neg_iwae_k3"
    assert "train −L_3 " in capsys.readouterr().out
    assert ref_train.main([*argv, "--estimator", "dreg"]) == 2
    assert "add --objective iwae" in capsys.readouterr().err


def test_the_elbo_beside_the_iwae_preset_takes_no_estimator(tmp_path, capsys):
    """--preset burda2015-iwae --objective elbo: the preset's estimator goes with its objective
    (before the fix, refused as if the user had typed --estimator); one typed stays refused."""
    argv = ["--preset", "burda2015-iwae", "--objective", "elbo", "--epochs", "1",
            "--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100", "--holdout", "0"]
    assert train.main([*argv, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["objective"], config["estimator"], config["samples"]) == ("elbo", None, 5)
    assert train.main([*argv, "--estimator", "dreg", "--out", str(tmp_path / "b")]) == 2
    assert "--estimator dreg is the gradient estimator" in capsys.readouterr().err
