"""Where the commands read and write: the run's recorded data folder, bounded flags, output
paths, leftovers of killed writers, and results that are not numbers.

Oracles: exit statuses and the one-line messages; the folder a command passed to data.load;
the files in the run folder; the checkpoint we planted (weights of 1e30).
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import fake_mnist
from numpyvae import checkpoint as ck
from numpyvae import config, data, evaluate, memory, sample, train
from numpyvae.datasets.fetch import ALL_FILES, DEFAULT_DATA_DIR, data_root
from numpyvae.run.folder import RUN_FILES
from numpyvae.run.lock import LOCK_NAME

TESTS = str(Path(__file__).parents[1])
ROOT = str(Path(TESTS).parent)
SHIPPED_RUN = Path(ROOT) / "results" / "burda2015-vae"
TINY = ["--hidden-dim", "8", "--latent-dim", "2", "--batch-size", "100", "--limit", "200",
        "--epochs", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on the fake data, trained from the folder `a` with --data-dir data (relative),
    and the folders a and b (another directory to run commands from). a/data holds files under
    MNIST's names (the fake loader reads none of them): a recorded folder is read only where
    the data are."""
    root = tmp_path_factory.mktemp("io")
    (root / "a" / "data" / "mnist").mkdir(parents=True)
    for name in ALL_FILES:
        (root / "a" / "data" / "mnist" / name).write_bytes(b"")
    (root / "b").mkdir()
    mp = pytest.MonkeyPatch()
    fake_mnist.install(mp)
    mp.chdir(root / "a")
    assert train.main([*TINY, "--data-dir", "data", "--out", "run"]) == 0
    mp.undo()
    return root


@pytest.fixture
def run_dir(trained, tmp_path):
    """A copy of the trained run, for a test that changes its folder."""
    out = tmp_path / "run"
    shutil.copytree(trained / "a" / "run", out)
    return out


@pytest.fixture
def data_dirs(monkeypatch):
    """The fake data, recording the data_dir of every data.load call."""
    asked = []

    def load(name, split="train", data_dir=None):
        asked.append(data_dir)
        return fake_mnist.load(name, split, data_dir)
    monkeypatch.setattr(data, "load", load)
    return asked


def no_computation(monkeypatch):
    """Fail the test if evaluate reaches its importance sampling or sample its picture."""
    monkeypatch.setattr(evaluate, "log_likelihood",
                        lambda *a: pytest.fail("evaluated before the flag was checked"))
    monkeypatch.setattr(sample.plots, "grid",
                        lambda *a: pytest.fail("decoded before the flag was checked"))


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------- the data folder

def test_a_relative_data_dir_is_recorded_absolute(trained):
    """Oracle: the folder the run was trained from — --data-dir data given in `a` is recorded
    as a/data in config.json and in the checkpoint's configuration."""
    expected = str(trained / "a" / "data")
    run = trained / "a" / "run"
    assert json.loads((run / "config.json").read_text())["data_dir"] == expected
    assert ck.load(run / "checkpoint.npz").config["data_dir"] == expected


@pytest.mark.parametrize("argv", [["--k", "2", "--limit", "5"],
                                  ["--k", "2", "--limit", "5", "--split", "train"]])
def test_evaluate_from_another_directory_reads_the_run_s_data_folder(trained, data_dirs,
                                                                     monkeypatch, argv):
    """Oracle: the folder passed to data.load — the run's, however the command is started."""
    monkeypatch.chdir(trained / "b")
    assert evaluate.main([str(trained / "a" / "run"), *argv]) == 0
    assert data_dirs and set(data_dirs) == {str(trained / "a" / "data")}


def test_sample_interpolate_reads_the_run_s_data_folder(trained, data_dirs, monkeypatch,
                                                        tmp_path):
    """Oracle: the folder passed to data.load — the run's recorded one, unless --data-dir."""
    monkeypatch.chdir(trained / "b")
    run = str(trained / "a" / "run")
    assert sample.main([run, "--interpolate", "--out", str(tmp_path / "i.png")]) == 0
    assert data_dirs == [str(trained / "a" / "data")]
    assert sample.main([run, "--interpolate", "--data-dir", "elsewhere",
                        "--out", str(tmp_path / "j.png")]) == 0
    assert data_dirs[1] == str(trained / "b" / "elsewhere")


def recording(run, data_dir):
    """The run `run` made to record `data_dir` as its data folder."""
    c = ck.load(run / "checkpoint.npz")
    c.config = dict(c.config, data_dir=data_dir)
    ck.save(run / "checkpoint.npz", c)


def test_a_recorded_data_folder_without_the_data_is_never_made_or_fetched_into(
        run_dir, data_dirs, tmp_path, capsys):
    """Oracle: the folder passed to data.load, and the file system — a path of the
    checkpoint's choosing (here a deep one that does not exist) is never handed to the loader,
    which would make it and download into it: each command reads the default instead, saying
    so, or --data-dir when given."""
    far = tmp_path / "far"
    recording(run_dir, str(far / "a" / "b" / "c"))
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5"]) == 0
    assert sample.main([str(run_dir), "--interpolate", "--out", str(tmp_path / "i.png")]) == 0
    assert data_dirs == [None, None]
    err = capsys.readouterr().err
    assert f"the run's data folder {far / 'a' / 'b' / 'c'} does not hold its mnist test files; " \
        f"reading {DEFAULT_DATA_DIR} instead (--data-dir names another)" in err
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5", "--data-dir",
                          str(tmp_path / "mine")]) == 0
    assert data_dirs[2:] == [str(tmp_path / "mine")]
    assert train.main(["--resume", "--out", str(run_dir), "--epochs", "2"]) == 0
    assert data_dirs[3:] == [str(data_root(None).absolute())] * 2
    assert "does not hold its mnist train and mnist test files" in capsys.readouterr().err
    assert ck.load(run_dir / "checkpoint.npz").config["data_dir"] == str(data_root(None).absolute())
    assert not far.exists()


def test_the_default_folder_recorded_is_read_without_a_word(run_dir, data_dirs, tmp_path,
                                                             monkeypatch, capsys):
    """A run that recorded the default folder (~/datasets, where data are fetched in any case),
    evaluated where that folder has no MNIST yet: read as recorded, and nothing said."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    recording(run_dir, str(data_root(None).absolute()))
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5"]) == 0
    assert data_dirs == [str(tmp_path / "home" / "datasets")]
    assert "does not hold" not in capsys.readouterr().err


# ---------------------------------------------------------------------------- errors name the file

def test_a_folder_made_unwritable_mid_run_names_the_file_that_failed(run_dir, monkeypatch,
                                                                     capsys):
    """As root, whom modes do not stop, the PermissionErrors of a folder made read-only after
    the lock was taken are planted: on every new file there (atomic_write's temp files) and on
    removing the lock file. Oracle: one line naming config.json, the first file the resume
    writes — not the lock the release could not remove, nor the temp file's random name."""
    fake_mnist.install(monkeypatch)
    real_open, real_unlink = os.open, os.unlink

    def refused(path, flags, *a, **k):
        p = os.fspath(path)
        if os.path.dirname(p) == str(run_dir) and flags & os.O_CREAT and \
                os.path.basename(p) != LOCK_NAME:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), p)
        return real_open(path, flags, *a, **k)

    def unlink(path, *a, **k):
        if os.path.basename(os.fspath(path)) == LOCK_NAME:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_unlink(path, *a, **k)
    monkeypatch.setattr(os, "open", refused)
    monkeypatch.setattr(os, "unlink", unlink)
    assert train.main([*TINY[:-1], "2", "--resume", "--out", str(run_dir)]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"error: cannot write the run into {run_dir}: Permission denied "
        f"({run_dir / 'config.json'})")


def test_a_config_json_that_is_a_folder_is_named_not_its_temp_file(run_dir, monkeypatch,
                                                                   capsys):
    fake_mnist.install(monkeypatch)
    (run_dir / "config.json").unlink()
    (run_dir / "config.json").mkdir()
    assert train.main([*TINY[:-1], "2", "--resume", "--out", str(run_dir)]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"error: cannot write the run into {run_dir}: Is a directory ({run_dir / 'config.json'})")


@pytest.fixture
def full_disk(monkeypatch):
    """A full disk as the system reports it: a write or fsync fails with ENOSPC, naming no
    file (the lock's PID, a picture's bytes)."""
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "pwrite", full)
    monkeypatch.setattr(os, "fsync", full)


def test_a_full_disk_is_one_line_naming_the_file(run_dir, data_dirs, full_disk, capsys):
    """sample and reference.evaluate on a full disk once printed "[Errno 28] …" without a path.
    Oracle: one line naming the file each was writing; nothing left behind."""
    from reference import evaluate as reference_evaluate
    before = sorted(os.listdir(run_dir))
    assert sample.main([str(run_dir), "--n", "4"]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"error: {run_dir / 'sample-seed0-n4.png'}: No space left on device")
    assert reference_evaluate.main([str(run_dir), "--k", "2", "--limit", "5",
                                    "--json", str(run_dir / "r.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: cannot write --json {run_dir / 'r.json'}: No space left on device")
    assert sorted(os.listdir(run_dir)) == before


def test_a_busy_folder_refusing_evaluate_json_names_the_json_flag(run_dir, data_dirs, capsys):
    from numpyvae.run.lock import RunLock
    with RunLock(run_dir):
        assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5",
                              "--json", str(run_dir / "r.json")]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.endswith("wait for it to finish or stop it, or give --json a path elsewhere")


def test_a_run_still_training_is_said_so(run_dir, data_dirs, tmp_path, capsys):
    """A training holds its folder (its lock, taken here as train takes it). Oracle: evaluate
    in its first epoch is one line saying so (it said "no such checkpoint file"); once it has
    a checkpoint, evaluate and sample say that they read the latest epoch's, and go on."""
    from numpyvae.run.lock import TRAINING, RunLock
    starting = tmp_path / "starting"
    starting.mkdir()
    with RunLock(starting, purpose=TRAINING), RunLock(run_dir, purpose=TRAINING):
        assert evaluate.main([str(starting), "--k", "2", "--limit", "5"]) == 1
        assert one_line(capsys.readouterr().err) == (
            f"error: {starting} is still training its first epoch (PID {os.getpid()}): it has "
            f"no checkpoint yet — run this again once the first epoch is done")
        assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5"]) == 0
        assert sample.main([str(run_dir), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
        said = [l for l in capsys.readouterr().err.splitlines() if "is being trained now" in l]
        assert said == [f"{run_dir} is being trained now (PID {os.getpid()}): this reads its "
                        "latest checkpoint, written at the end of each epoch, not the finished "
                        "run"] * 2
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5"]) == 0      # done: quiet
    assert "trained now" not in capsys.readouterr().err


# ---------------------------------------------------------------------------- huge numbers

@pytest.mark.parametrize("flag,value", [
    ("--hidden-dim", 10**200), ("--latent-dim", 10**46), ("--batch-size", 10**400),
    ("--samples", 10**200), ("--epochs", 10**12), ("--limit", 10**400),
    ("--holdout", 10**12), ("--seed", 2**64)])
def test_train_size_flags_are_bounded(flag, value, capsys):
    """Known message: every size and count has an upper bound, stated in the refusal. Oracle
    for the bounds' other side: the shipped run's recorded configuration passes every check
    (checkpoint.py's), so no real run is refused."""
    with pytest.raises(SystemExit):
        train.build_parser().parse_args([flag, str(value)])
    assert f"argument {flag}: expected an integer from " in capsys.readouterr().err
    recorded = {**config.absent_before(2),         # a format-2 run: before blas_threads
                **json.loads((SHIPPED_RUN / "config.json").read_text())}
    assert {k: config.check_value(k, recorded[k]) for k in config.BY_NAME} == \
        dict.fromkeys(config.BY_NAME)


def test_a_huge_hidden_dim_is_one_line(tmp_path, capsys):
    """Known messages, no traceback: 10²⁰⁰ units once overflowed the memory message; every
    size at its bound together reaches the memory check, whose estimate stays in range."""
    with pytest.raises(SystemExit):
        train.main(["--hidden-dim", str(10**200)])
    err = capsys.readouterr().err
    assert "argument --hidden-dim: expected an integer from 1 to 1,000,000" in err
    assert "Traceback" not in err
    largest = ["--hidden-dim", config.MAX_UNITS, "--latent-dim", config.MAX_UNITS,
               "--samples", config.MAX_SAMPLES, "--batch-size", config.MAX_BATCH,
               "--out", tmp_path / "run"]
    assert train.main([str(a) for a in largest]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: this run (--batch-size ")
    assert not (tmp_path / "run").exists()


def test_memory_words_any_number_of_bytes():
    """Known values: no integer overflows the message (a float would above 1.8e308)."""
    assert memory.gigabytes(10**400) == "1.00e+391 GB"
    assert memory.gigabytes(2 * 10**9) == "2 GB" and memory.gigabytes(5 * 10**6) == "5 MB"
    with pytest.raises(memory.UsageError, match="needs ≈ 1.00e[+]391 GB of memory"):
        memory.check_memory(10**400, "this", "ask for less")


@pytest.mark.parametrize("command,argv,flag", [
    (sample, ["--n", str(2**64)], "--n"),
    (sample, ["--interpolate", "--steps", str(10**400)], "--steps"),
    (sample, ["--interpolate", "--between", "0", str(10**400)], "--between"),
    (sample, ["--seed", str(2**64)], "--seed"),
    (evaluate, ["--k", str(10**400)], "--k"),
    (evaluate, ["--limit", str(10**400)], "--limit"),
    (evaluate, ["--batch", str(10**400)], "--batch"),
    (evaluate, ["--seed", str(2**64)], "--seed")])
def test_sample_and_evaluate_flags_are_bounded(trained, data_dirs, tmp_path, capsys, command,
                                               argv, flag):
    """Known message: a number no picture or evaluation could use is a usage error naming the
    flag and its range (it was a TypeError or OverflowError traceback)."""
    with pytest.raises(SystemExit):
        command.main([str(trained / "a" / "run"), *argv, "--out" if command is sample else
                      "--json", str(tmp_path / ("x.png" if command is sample else "x.json"))])
    assert f"argument {flag}: expected an integer from " in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- output paths

@pytest.mark.parametrize("path", ["", ".", "/", "{tmp}", "{tmp}/", "{tmp}/.", "{tmp}/..",
                                  "{tmp}/folder.json", "{tmp}/new/"])
def test_evaluate_json_must_name_a_file_before_evaluating(trained, data_dirs, tmp_path,
                                                          monkeypatch, capsys, path):
    """Known message, one line naming --json, before the importance sampling (minutes at
    k = 5000): "" once wrote nothing silently, a folder failed with a traceback afterwards."""
    (tmp_path / "folder.json").mkdir()
    no_computation(monkeypatch)
    path = path.format(tmp=tmp_path)
    assert evaluate.main([str(trained / "a" / "run"), "--k", "2", "--limit", "5",
                          "--json", path]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: --json ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.json"]


@pytest.mark.parametrize("path", ["{tmp}/folder.png", "{tmp}/folder.png/", "{tmp}/x.png/"])
def test_sample_out_must_name_a_file_before_decoding(trained, tmp_path, monkeypatch, capsys,
                                                     path):
    """Known message, one line naming --out, before anything is decoded: a folder named x.png
    once failed only when the picture was put in place."""
    (tmp_path / "folder.png").mkdir()
    no_computation(monkeypatch)
    assert sample.main([str(trained / "a" / "run"), "--n", "4",
                        "--out", path.format(tmp=tmp_path)]) == 2
    assert one_line(capsys.readouterr().err).startswith("error: --out ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.png"]


# ---------------------------------------------------------------------------- leftovers

def plant_leftovers(folder, names):
    """Temp files as atomic_write names them, of a writer (PID 99999999) killed mid-write."""
    planted = [folder / f".{name}.99999999.k1ll3d_x.tmp" for name in names]
    for p in planted:
        p.write_bytes(b"\0" * 3_000_000)                           # a 3 MB half-written PNG
    return planted


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


LEFT = ("sample-seed0-n64.png", "interpolation-0-1.png", "mine.png", "evaluation.json")
USERS = (".notes.json.999999.tmp", ".notes.png.99999998.tmp", ".checkpoint.npz.99999997.MINE.tmp",
         ".config.json.99999996.abc.tmp")          # names atomic_write never makes


def plant_users(folder):
    for name in USERS:
        (folder / name).write_text("notes")
    return [folder / name for name in USERS]


def test_sample_removes_only_what_a_killed_sample_of_its_picture_left(run_dir, tmp_path):
    """Oracle: the file system — sample writing a picture into a run folder first removes the
    temp files a killed writer left for that picture, and nothing else: not other pictures',
    not evaluate's, not the run's, and no file of the user's; elsewhere nothing at all."""
    planted = plant_leftovers(run_dir, LEFT + ("sample-seed0-n4.png", "checkpoint.npz"))
    users = plant_users(run_dir)
    assert sample.main([str(run_dir), "--n", "4"]) == 0
    assert [p for p in planted + users if not p.exists()] == [planted[4]]
    other = tmp_path / "not-a-run"
    other.mkdir()
    theirs = plant_leftovers(other, ["y.png"])
    assert sample.main([str(run_dir), "--n", "4", "--out", str(other / "y.png")]) == 0
    assert all(p.exists() for p in theirs)


def test_evaluate_removes_only_what_a_killed_writer_of_its_json_left(run_dir, data_dirs,
                                                                     tmp_path):
    """Oracle: the file system — evaluating a run writes nothing there and removes nothing;
    writing --json into a run folder removes the temp files a killed writer left for that
    file, and nothing else."""
    planted = plant_leftovers(run_dir, LEFT + ("checkpoint.npz",))
    users = plant_users(run_dir)
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5"]) == 0
    assert all(p.exists() for p in planted + users)
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    plant_leftovers(other, ["r.txt"])
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5",
                          "--json", str(other / "r.txt")]) == 0
    assert leftovers(other) == leftovers(run_dir)
    assert json.loads((other / "r.txt").read_text())["k"] == 2


def test_train_resume_removes_what_a_killed_train_left_and_nothing_else(run_dir, monkeypatch):
    """Oracle: the file system — train --resume removes the temp files a killed training left
    for the run's own files; a killed sample's, evaluate's and the user's files stay
    (`echo notes > RUN/.notes.json.999999.tmp` once went)."""
    fake_mnist.install(monkeypatch)
    ours = plant_leftovers(run_dir, RUN_FILES)
    theirs = plant_leftovers(run_dir, LEFT) + plant_users(run_dir)
    assert train.main([*TINY[:-1], "2", "--resume", "--out", str(run_dir)]) == 0
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_sample_killed_mid_write_leaves_nothing_after_the_next_command(run_dir, signum):
    """Oracle: the file system — a sample process killed while its picture is being written
    (here: held inside fsync) leaves its temp file; the same command, run again, removes it
    and writes the picture."""
    code = ("import os, sys, time; os.fsync = lambda fd: time.sleep(600); "
            "from numpyvae.sample import main; "
            f"sys.exit(main([{str(run_dir)!r}, '--n', '1100']))")          # a pixel grid
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while not leftovers(run_dir) and proc.poll() is None:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, proc.stderr.read()
    finally:
        proc.send_signal(signum)
        proc.wait()
    assert leftovers(run_dir) and not (run_dir / "sample-seed0-n1100.png").exists()
    assert sample.main([str(run_dir), "--n", "1100"]) == 0
    assert leftovers(run_dir) == [] and (run_dir / "sample-seed0-n1100.png").exists()
    assert {f for f in RUN_FILES if (run_dir / f).exists()} >= {"checkpoint.npz", "config.json"}


# ---------------------------------------------------------------------------- not a number

@pytest.mark.filterwarnings("error::RuntimeWarning")       # one line: no numpy warnings
def test_evaluate_of_weights_too_large_is_an_error_not_nan(run_dir, data_dirs, tmp_path,
                                                           capsys):
    """Oracle: the checkpoint we planted — every parameter 1e30 (finite in float32) makes the
    −ELBO overflow: one line and exit status 1, no number printed and no JSON written (it
    was `nan` with status 0, and NaN in the JSON)."""
    c = ck.load(run_dir / "checkpoint.npz")
    for a in c.params.values():
        a[...] = 1e30
    ck.save(run_dir / "checkpoint.npz", c)
    assert evaluate.main([str(run_dir), "--k", "2", "--limit", "5",
                          "--json", str(tmp_path / "r.json")]) == 1
    out, err = capsys.readouterr()
    line = one_line(err)
    assert "its model evaluates to neg_elbo = " in line and "not a finite number" in line
    assert "nan" not in out.lower() and not (tmp_path / "r.json").exists()


def test_json_is_standard(tmp_path):
    """Oracle: the JSON standard (RFC 8259 has no NaN or Infinity) — a result that is not
    finite is refused, naming it, and nothing is written."""
    with pytest.raises(ck.CheckpointError, match=r"log_px = nan is not a finite number"):
        evaluate.write_json(tmp_path / "r.json", dict(log_px=float("nan"), k=2))
    assert not list(tmp_path.iterdir())
    evaluate.write_json(tmp_path / "r.json", dict(log_px=-90.5, k=2))
    assert json.loads((tmp_path / "r.json").read_text()) == dict(log_px=-90.5, k=2)


def test_the_default_data_folder_is_recorded_as_the_folder_it_is(tmp_path, monkeypatch):
    """A run trained without --data-dir records ~/datasets expanded, so evaluating it with
    another (or no usable) HOME reads where it trained. Oracle: config.json."""
    fake_mnist.install(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert train.main([*TINY, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["data_dir"] == \
        str(tmp_path / "home" / "datasets")
