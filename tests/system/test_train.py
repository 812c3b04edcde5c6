"""`python -m numpyvae.train` through main(argv), on synthetic data (tests/fake_mnist.py).

Oracles: the uninterrupted run (exact resume must reproduce it bit for bit); the files the run
wrote; the Torch reference Model loaded from the checkpoint (same −ELBO).
"""
import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_mnist
import numpyvae as nv
import numpyvae.datasets.fetch
from numpyvae import checkpoint as ck
from numpyvae import evaluate, train
from numpyvae.likelihood import neg_elbo_per_image
from numpyvae.model import VAE
from reference.model import from_params, neg_elbo

TESTS = str(Path(__file__).parents[1])          # the helpers: fake_mnist, checks
QUICK = ["--hidden-dim", "16", "--latent-dim", "4", "--batch-size", "100"]


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def run(tmp_path, *argv, name="run"):
    out = tmp_path / name
    code = train.main([*QUICK, "--out", str(out), *argv])
    return code, out


def test_smoke_run_writes_everything(tmp_path, capsys):
    code, out = run(tmp_path, "--epochs", "2", "--latent-dim", "2")
    assert code == 0
    for f in ("config.json", "metrics.csv", "checkpoint.npz", "elbo.png", "reconstructions.png",
              "samples.png", "latent.png"):
        assert (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(ck.HISTORY_COLUMNS) - {"holdout_neg_elbo"} <= set(rows[0])      # none held out
    assert "holdout_neg_elbo" not in rows[0] and rows[0]["binarize"] == "threshold"
    r = rows[-1]
    assert np.isclose(float(r["test_neg_elbo"]), float(r["test_recon"]) + float(r["test_kl"]))
    assert float(r["test_neg_elbo"]) < float(rows[0]["test_neg_elbo"])      # it learns
    config = json.loads((out / "config.json").read_text())
    assert config["latent_dim"] == 2 and config["binarize"] == "threshold"
    printed = capsys.readouterr().out
    assert "nats/image [threshold]" in printed and "epoch   2/2" in printed


def test_the_header_counts_epochs_and_a_resume_says_where_it_resumes(tmp_path, capsys):
    """Known wording: "1 epoch" (not "1 epochs"), and a resumed run names the epoch it resumes
    at and the checkpoint it resumes from."""
    code, out = run(tmp_path, "--epochs", "1")
    assert code == 0 and ", 1 epoch, seed" in capsys.readouterr().out
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming at epoch 2, from {out / 'checkpoint.npz'}" in printed
    assert "arithmetic: numpy" in printed and "is not the run's" not in printed   # the same


def test_a_resume_names_the_hand_edits_of_config_json_it_ignores(tmp_path, capsys):
    """config.json is a record, not an input: a resumed run keeps the checkpoint's settings and
    writes config.json again from them. Known line: each edited key with both values, and
    the flag that does change what may change; the run goes on with the checkpoint's."""
    code, out = run(tmp_path, "--epochs", "1")
    edited = dict(json.loads((out / "config.json").read_text()), lr=0.5, epochs=7, notes="mine")
    (out / "config.json").write_text(json.dumps(edited))
    capsys.readouterr()
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 0
    [line] = [l for l in capsys.readouterr().out.splitlines() if "was edited" in l]
    assert line == (f"{out / 'config.json'} was edited: epochs 7 (the checkpoint's: 1), lr 0.5 "
                    "(the checkpoint's: 0.001), notes \"mine\" (the checkpoint's: none) — ignored: "
                    "a resumed run keeps the checkpoint's settings and writes config.json again "
                    "from them; --epochs changes it on --resume")
    config = json.loads((out / "config.json").read_text())
    assert (config["lr"], config["epochs"], "notes" in config) == (0.001, 2, False)
    assert train.main(["--resume", "--out", str(out), "--epochs", "3"]) == 0
    assert "was edited" not in capsys.readouterr().out           # as written: nothing to say


def test_defaults_are_the_notebooks():
    d = train.Config()
    assert (d.batch_size, d.hidden_dim, d.latent_dim, d.lr, d.epochs, d.seed, d.binarize,
            d.dataset, d.samples) == (128, 200, 20, 1e-3, 20, 0, "threshold", "mnist", 1)


@pytest.mark.parametrize("argv,needle", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "-3"], "--batch-size"),
    (["--hidden-dim", "0"], "--hidden-dim"), (["--latent-dim", "two"], "--latent-dim"),
    (["--lr", "0"], "--lr"), (["--lr", "nan"], "--lr"), (["--lr", "-1e-3"], "--lr"),
    (["--samples", "0"], "--samples"), (["--seed", "-1"], "--seed"),
    (["--binarize", "otsu"], "--binarize"), (["--dataset", "cifar10"], "--dataset"),
    (["--dtype", "float16"], "--dtype"), (["--backend", "jax"], "--backend"),
    (["--unknown-flag"], "unrecognized arguments"),
    (["--epoch", "1"], "unrecognized arguments: --epoch"),            # never abbreviated
    (["--lat", "3"], "unrecognized arguments: --lat")])
def test_bad_flags_are_refused(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    (["--epoch", "3"], "unrecognized arguments: --epoch 3 (did you mean --epochs?)"),
    (["--lat=3", "--hiden-dim", "4"], "unrecognized arguments: --lat=3 --hiden-dim 4 (--lat: did "
                                      "you mean --latent-dim?; --hiden-dim: did you mean "
                                      "--hidden-dim?)"),
    (["--zzz"], "unrecognized arguments: --zzz")])
def test_a_mistyped_flag_is_two_lines_naming_the_nearest(argv, said, capsys):
    """Known lines: the refusal names the flag meant, and the usage is one line pointing at
    --help (it was 19 lines of usage, the error last and no suggestion)."""
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code == 2 and capsys.readouterr().err == (
        "usage: python -m numpyvae.train [flags]   (--help lists every flag)\n"
        f"python -m numpyvae.train: error: {said}\n")


def test_bad_resume_requests(tmp_path, capsys):
    assert train.main(["--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert train.main(["--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    code, out = run(tmp_path, "--epochs", "1")
    assert train.main([*QUICK, "--out", str(out), "--epochs", "2"]) == 2    # would overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert train.main(["--resume", "--out", str(out), "--lr", "0.01", "--epochs", "2"]) == 2
    assert "--lr 0.01 differs" in capsys.readouterr().err
    (out / "checkpoint.npz").write_bytes(b"garbage")
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 1
    assert "not a readable" in capsys.readouterr().err


def run_state(out):
    c = ck.load(out / "checkpoint.npz")
    hist = {k: v for k, v in c.history.items() if k != "epoch_seconds"}
    return c, hist


def assert_same_run(a_out, b_out):
    a, ha = run_state(a_out)
    b, hb = run_state(b_out)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert np.array_equal(a.adam_m, b.adam_m) and np.array_equal(a.adam_v, b.adam_v)
    assert a.adam_t == b.adam_t and a.rng_state == b.rng_state and ha.keys() == hb.keys()
    assert all(np.array_equal(ha[c], hb[c], equal_nan=True) for c in ha)   # NaN: none held out


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_resume_is_exact(tmp_path, backend):
    """A 4-epoch run equals a 2-epoch run resumed to 4: params, Adam, metrics bit-identical
    (batch 70: 1200 images make 17 full batches and a partial one of 10)."""
    extra = ["--backend", backend, "--binarize", "dynamic", "--samples", "2", "--batch-size", "70"]
    assert run(tmp_path, "--epochs", "4", *extra, name="full")[0] == 0
    assert run(tmp_path, "--epochs", "2", *extra, name="half")[0] == 0
    assert train.main(["--resume", "--out", str(tmp_path / "half"), "--epochs", "4"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "half")
    rows = list(csv.DictReader(open(tmp_path / "half" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]


def test_interrupt_mid_epoch_then_resume_is_exact(tmp_path, monkeypatch):
    """SIGINT raised at a known step: checkpoint mid-epoch, exit 130, resume == uninterrupted."""
    assert run(tmp_path, "--epochs", "2", name="full")[0] == 0
    real, calls = VAE.loss_and_grads, [0]

    def interrupting(self, x, *a, **k):
        calls[0] += len(x) > 1                      # not train.warm_up's 1-image warm-up
        if calls[0] == 12 + 4:                      # 12 steps per epoch: epoch 2, step 4
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)      # a second Ctrl-C changes nothing
        return real(self, x, *a, **k)
    monkeypatch.setattr(VAE, "loss_and_grads", interrupting)
    code, out = run(tmp_path, "--epochs", "2", name="cut")
    assert code == train.EXIT_INTERRUPTED
    c = ck.load(out / "checkpoint.npz")
    assert (c.epoch, c.step_in_epoch) == (1, 4)
    monkeypatch.setattr(VAE, "loss_and_grads", real)
    assert train.main(["--resume", "--out", str(out)]) == 0
    assert_same_run(tmp_path / "full", out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_a_signal_the_user_ignored_stays_ignored(tmp_path, monkeypatch, sig):
    """`nohup` (SIGHUP ignored) or a script's background job (SIGINT ignored): the signal
    arriving mid-epoch changes nothing — the run trains to its end, as the same run without
    the signal, and the handler is the ignore it was. Oracle: the run never signalled."""
    assert run(tmp_path, "--epochs", "2", name="quiet")[0] == 0
    real, calls = VAE.loss_and_grads, [0]

    def signalling(self, x, *a, **k):
        calls[0] += len(x) > 1                      # not train.warm_up's 1-image warm-up
        if calls[0] == 12 + 4:                      # epoch 2, step 4
            signal.raise_signal(sig)
        return real(self, x, *a, **k)
    monkeypatch.setattr(VAE, "loss_and_grads", signalling)
    previous = signal.signal(sig, signal.SIG_IGN)
    try:
        code, out = run(tmp_path, "--epochs", "2", name="ignored")
        assert signal.getsignal(sig) == signal.SIG_IGN
    finally:
        signal.signal(sig, previous)
    assert calls[0] > 12 + 4 and code == 0
    assert_same_run(tmp_path / "quiet", out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_in_a_subprocess(tmp_path, sig):
    """A real Ctrl-C (twice), SIGTERM or SIGHUP (the terminal closed) to a real process: exit
    128+signal, a message, a loadable checkpoint, no temp files."""
    out = tmp_path / "run"
    # The child stands for a command started at a terminal: a signal this test runner inherited
    # as ignored (under nohup, or as a background job) is delivered to it again; numpyvae keeps
    # an inherited SIG_IGN by design (numpyvae/run/signals.py).
    unignore = (f"import signal\nif signal.getsignal({int(sig)}) == signal.SIG_IGN: "
                f"signal.signal({int(sig)}, signal.SIG_DFL)\n")
    code = unignore + fake_mnist.PRELUDE.format(tests=TESTS) + (
        f"sys.exit(main({[*QUICK, '--batch-size', '4', '--epochs', '50', '--backend', 'numpy', '--out', str(out)]!r}, cli=True))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(Path(TESTS).parent))
    deadline = time.time() + 60
    while not (out / "metrics.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.1)
    proc.send_signal(sig)
    time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "--resume" in err
    c = ck.load(out / "checkpoint.npz")
    assert c.epoch >= 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = VAE.loss_and_grads, [0]

    def poisoned(self, x, eps, out=None, **kw):         # kw: objective=, estimator=
        calls[0] += len(x) > 1                      # not train.warm_up's 1-image warm-up
        loss, grads = real(self, x, eps, out, **kw)
        return (float("nan") if calls[0] == 12 + 3 else loss), grads
    monkeypatch.setattr(VAE, "loss_and_grads", poisoned)
    code, out = run(tmp_path, "--epochs", "3")
    assert code == train.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "non-finite loss at epoch 2, step 3" in err and "last good checkpoint is kept" in err
    assert ck.load(out / "checkpoint.npz").epoch == 1


@pytest.mark.parametrize("at_step,says", [
    (12 + 3, "non-finite loss at epoch 2, step 4"),            # caught by the next step's loss
    (12 + 12, "non-finite parameters at the end of epoch 2")])   # the epoch's last step
def test_non_finite_gradient_stops_before_any_checkpoint_holds_it(tmp_path, monkeypatch, capsys,
                                                                  at_step, says):
    """A NaN gradient (planted in one entry) never reaches a checkpoint: train_step makes no
    pass over the gradients, so the NaN parameter it leaves is caught by the next loss or by
    the check before each checkpoint."""
    real, calls = VAE.loss_and_grads, [0]

    def poisoned(self, x, eps, out=None, **kw):         # kw: objective=, estimator=
        calls[0] += len(x) > 1                      # not train.warm_up's 1-image warm-up
        loss, grads = real(self, x, eps, out, **kw)
        if calls[0] == at_step:
            grads["Decoder.FC_dec2.weight"][5, 5] = np.nan
        return loss, grads
    monkeypatch.setattr(VAE, "loss_and_grads", poisoned)
    code, out = run(tmp_path, "--epochs", "3")
    assert code == train.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert says in err and "last good checkpoint is kept" in err
    assert ck.load(out / "checkpoint.npz").epoch == 1


def test_a_diverged_adam_state_never_reaches_a_checkpoint(tmp_path, monkeypatch, capsys):
    """Adam's second moment overflowing to inf in epoch 2 (planted: a diverging run's g² beyond
    float32's range, its loss still finite) stops the run like a non-finite loss: exit 3, the
    epoch-1 checkpoint kept, and that checkpoint loads."""
    real, calls = nv.Adam.step, [0]

    def overflowing(self, params, grads):
        real(self, params, grads)
        calls[0] += 1
        if calls[0] == 12 + 5:                      # 12 steps per epoch: epoch 2, step 5
            self.v[7] = np.inf
    monkeypatch.setattr(nv.Adam, "step", overflowing)
    code, out = run(tmp_path, "--epochs", "3")
    assert code == train.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "Adam's moments overflowed at the end of epoch 2" in err and "--lr" in err
    saved = ck.load(out / "checkpoint.npz")
    assert saved.epoch == 1 and np.isfinite(saved.adam_v).all()


def test_the_torch_reference_writes_a_run_folder_numpyvae_reads(tmp_path, capsys):
    """reference.train --out: metrics.csv with numpyvae's columns (one `diff` apart), a
    checkpoint numpyvae's evaluate reads, and a folder holding a run refused, as train does."""
    from reference import train as reference_train
    out = tmp_path / "torch"
    assert reference_train.main(["--epochs", "2", "--limit", "300", "--hidden-dim", "16",
                                 "--out", str(out)]) == 0
    code, ours = run(tmp_path, "--epochs", "2")
    header = [open(d / "metrics.csv").readline() for d in (out, ours)]
    assert code == 0 and header[0] == header[1]
    assert [r["epoch"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1", "2"]
    capsys.readouterr()
    assert evaluate.main([str(out), "--k", "5", "--limit", "20"]) == 0
    assert "test split, 20 images" in capsys.readouterr().out
    assert reference_train.main(["--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" not in err
    # numpyvae.train does not continue it (its noise, Adam and arithmetic are Torch's), and
    # leaves it as it was: the checkpoint, and config.json's record of who trained it
    before = {f: (out / f).read_bytes() for f in ("checkpoint.npz", "config.json", "metrics.csv")}
    assert train.main(["--resume", "--out", str(out), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert f"was trained by reference.train, torch {torch.__version__} on cpu, and numpyvae." \
        "train continues only its own runs" in err
    assert {f: (out / f).read_bytes() for f in before} == before
    assert json.loads((out / "config.json").read_text())["trained_by"].startswith("reference")


def test_torch_reference_gets_the_same_test_elbo_from_the_checkpoint(tmp_path):
    code, out = run(tmp_path, "--epochs", "2", "--dtype", "float64")
    c = ck.load(out / "checkpoint.npz")
    images, _ = fake_mnist.load("mnist", "test")
    x = np.round(images.reshape(len(images), -1) / 255.0)
    model = VAE(784, 16, 4, dtype="float64")
    model.load_params(c.params)
    tmodel = from_params(c.params, dtype=torch.float64)
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((len(x), 4))
    ours = sum(neg_elbo_per_image(model, x, eps)).sum()
    theirs, _ = neg_elbo(tmodel, torch.tensor(x), torch.tensor(eps))
    assert abs(ours - theirs.item()) <= 1e-10 * abs(theirs.item())       # same ε: equal
    # Torch's own noise: equal within Monte-Carlo error (4 standard errors of the mean)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = [neg_elbo(tmodel, torch.tensor(x), torch.randn(len(x), 4))[0].item() / len(x)
                 for _ in range(30)]
    ours_draws = [sum(neg_elbo_per_image(model, x, rng.standard_normal((len(x), 4)))).mean()
                  for _ in range(30)]
    se = np.sqrt(np.var(draws) / 30 + np.var(ours_draws) / 30)
    assert abs(np.mean(draws) - np.mean(ours_draws)) < 4 * se
    metrics = list(csv.DictReader(open(out / "metrics.csv")))
    # metrics.csv's figure is one draw of ε per image over 300 images: its spread is that of
    # `draws` (std measured ≈ 0.1 nat), so 1 nat is ~10 standard deviations, yet far below
    # any error of substance (a wrong KL or a missed 1/L moves it by tens of nats).
    assert abs(float(metrics[-1]["test_neg_elbo"]) - np.mean(draws)) < 1.0


def test_missing_data_is_a_clear_error_without_traceback(tmp_path, monkeypatch, capsys):
    """Real loader, an empty data folder, every fetch source refused: exit 1, one message."""
    monkeypatch.undo()                                  # the real numpyvae.data.load again
    monkeypatch.setattr(numpyvae.datasets.fetch, "default_sources", lambda name: [])
    code = train.main([*QUICK, "--epochs", "1", "--data-dir", str(tmp_path / "empty"),
                       "--out", str(tmp_path / "runs" / "run")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "train-images-idx3-ubyte" in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "runs").exists()     # the failed start left no empty folders behind


def test_a_failed_start_keeps_a_folder_the_user_made(tmp_path, monkeypatch, capsys):
    """Only folders the command itself made are removed: the user's own (empty) one stays,
    whether it is the run folder or above it."""
    monkeypatch.undo()
    monkeypatch.setattr(numpyvae.datasets.fetch, "default_sources", lambda name: [])
    (tmp_path / "mine").mkdir()
    for out in (tmp_path / "mine", tmp_path / "mine" / "a" / "run"):
        code = train.main([*QUICK, "--epochs", "1", "--data-dir", str(tmp_path / "empty"),
                           "--out", str(out)])
        assert code == 1 and (tmp_path / "mine").is_dir()
        assert list((tmp_path / "mine").iterdir()) == []


def test_resume_oracle_rejects_a_resume_that_forgets_the_generator(tmp_path, monkeypatch):
    """Planted error: a resume that starts a fresh Generator must fail assert_same_run."""
    assert run(tmp_path, "--epochs", "2", name="full")[0] == 0
    assert run(tmp_path, "--epochs", "1", name="half")[0] == 0
    real = ck.load

    def forgetful(path):
        c = real(path)
        c.rng_state = train.train_generator(0).bit_generator.state
        return c
    monkeypatch.setattr(train.ckpt_io, "load", forgetful)
    assert train.main(["--resume", "--out", str(tmp_path / "half"), "--epochs", "2"]) == 0
    monkeypatch.undo()
    fake_mnist.install(monkeypatch)
    with pytest.raises(AssertionError):
        assert_same_run(tmp_path / "full", tmp_path / "half")


def test_an_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    code = train.main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "afile")])
    err = capsys.readouterr().err
    assert code == 2 and "a file is there, not a folder" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_new_run_never_overwrites_a_users_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("my notes")
    assert train.main([*QUICK, "--epochs", "1", "--out", str(out)]) == 2
    assert "already holds a run (config.json)" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "my notes"


def test_resume_refuses_another_backend_and_too_few_epochs(tmp_path, capsys, monkeypatch):
    code, out = run(tmp_path, "--epochs", "1", "--backend", "numba")
    assert train.main(["--resume", "--out", str(out), "--epochs", "2", "--backend", "numpy"]) == 2
    assert "--backend numpy differs" in capsys.readouterr().err
    real, calls = VAE.loss_and_grads, [0]

    def interrupting(self, x, *a, **k):
        calls[0] += len(x) > 1
        if calls[0] == 3:
            signal.raise_signal(signal.SIGINT)
        return real(self, x, *a, **k)
    monkeypatch.setattr(VAE, "loss_and_grads", interrupting)
    assert train.main(["--resume", "--out", str(out), "--epochs", "3"]) == 130   # in epoch 2
    monkeypatch.setattr(VAE, "loss_and_grads", real)
    assert train.main(["--resume", "--out", str(out), "--epochs", "1"]) == 2
    assert "--epochs must be at least 2" in capsys.readouterr().err


def test_resume_with_nothing_left_redraws_missing_pictures(tmp_path, capsys):
    code, out = run(tmp_path, "--epochs", "1")
    for png in out.glob("*.png"):
        png.unlink()
    assert train.main(["--resume", "--out", str(out), "--epochs", "1"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.png")) == [
        "elbo.png", "latent.png", "reconstructions.png", "samples.png"]


@pytest.mark.parametrize("entry,value,match", [
    ("step_in_epoch", 99, "stopped at step 99 of an epoch that has 12"),
    ("order", "zeros", "not a permutation"),
    ("adam.t", 5, "Adam has taken 5 steps"),
    ("history.epoch", [1e300], "its history's epochs are not 1 to 1 in order"),
])
def test_resume_refuses_a_checkpoint_whose_position_does_not_fit(tmp_path, capsys, entry, value, match):
    code, out = run(tmp_path, "--epochs", "1")
    path = out / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if entry == "order":
        arrays["step_in_epoch"], arrays["order"] = np.array(3), np.zeros(1200, np.int64)
    else:
        arrays[entry] = np.array(value)
        if entry == "step_in_epoch":
            arrays["order"] = np.arange(1200)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    config = (out / "config.json").read_bytes()
    assert train.main(["--resume", "--out", str(out), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert match in err and str(path) in err and "Traceback" not in err
    assert (out / "config.json").read_bytes() == config          # refused before any write
