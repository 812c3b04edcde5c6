"""An output goes to a path the command creates, and a flag means one thing.

Oracles: exit statuses, the one-line messages, and the file system — what stood at a path
before a command (a user's file, an earlier result, a device node, a FIFO) is there, byte for
byte, after it.
"""
import os
import shutil
import subprocess
import sys

import pytest

import fake_mnist
import numpyvae.data
from benchmarks import throughput
from numpyvae import evaluate, sample, train
from reference import evaluate as reference_evaluate
from reference import gradcheck
from test_reliability import ROOT
from test_terminal import trained as run_dir  # noqa: F401  (a 1-epoch run, the fixture)
from test_train import QUICK, TESTS

# benchmarks.throughput at its smallest: one step of a hidden-16 NumPy model, no log-likelihood
TINY_THROUGHPUT = ["--steps", "1", "--epochs", "1", "--batch-size", "100", "--hidden-dim", "16",
                   "--ll-images", "0", "--impls", "numpyvae numpy"]


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    fake_mnist.install(monkeypatch)


def err_line(capsys):
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(params=["a file of the user's", "a FIFO", "a device"])
def taken(request, tmp_path):
    """Something already at the output path, and a check that it is untouched."""
    path = tmp_path / "out.png"
    if request.param == "a FIFO":
        os.mkfifo(path)
        return path, lambda: path.is_fifo()
    if request.param == "a device":
        return "/dev/null", lambda: os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    path.write_bytes(b"mine")
    return path, lambda: path.read_bytes() == b"mine"


def test_no_output_replaces_what_is_there(run_dir, taken, capsys):
    path, untouched = taken
    runs = [lambda: evaluate.main([str(run_dir), "--k", "2", "--limit", "5", "--json", str(path)]),
            lambda: sample.main([str(run_dir), "--n", "4", "--out", str(path)]),
            lambda: reference_evaluate.main([str(run_dir), "--k", "2", "--limit", "5",
                                             "--json", str(path)]),
            lambda: throughput.main([*TINY_THROUGHPUT, "--json", str(path)])]
    for command in runs:
        assert command() == 2
        line = err_line(capsys)
        assert "is there already; an output never replaces anything" in line, line
        assert untouched()


def test_sample_run_again_rewrites_its_own_picture_and_nothing_else(run_dir, tmp_path, capsys):
    """Rerunning a command works: the picture it wrote before (the same checkpoint and request,
    by the stamp in the PNG) is written again; a picture of another request, or of another
    checkpoint (the run trained on), and a file of the user's under the name are kept and the
    command refused. Oracle: exit statuses, the lines, the bytes at the paths."""
    run_dir = shutil.copytree(run_dir, tmp_path / "run")          # this test trains it on
    picture = run_dir / "sample-seed5-n4.png"
    assert sample.main([str(run_dir), "--n", "4", "--seed", "5"]) == 0 and picture.exists()
    assert sample.main([str(run_dir), "--n", "4", "--seed", "5"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"wrote {picture} again (the same checkpoint and request)"
    mine = tmp_path / "mine.png"
    assert sample.main([str(run_dir), "--n", "4", "--seed", "5", "--out", str(mine)]) == 0
    before = mine.read_bytes()
    assert sample.main([str(run_dir), "--n", "4", "--seed", "6", "--out", str(mine)]) == 2
    assert "a picture numpyvae drew from another checkpoint, or of another request, is there; " \
        "it is kept" in err_line(capsys) and mine.read_bytes() == before
    assert train.main(["--resume", "--out", str(run_dir), "--epochs", "2"]) == 0
    before = picture.read_bytes()
    assert sample.main([str(run_dir), "--n", "4", "--seed", "5"]) == 2
    assert "from another checkpoint" in capsys.readouterr().err and picture.read_bytes() == before
    picture.write_bytes(before[:100])               # a PNG's start: no stamp, so not ours
    assert sample.main([str(run_dir), "--n", "4", "--seed", "5"]) == 2
    assert "is there already" in capsys.readouterr().err and picture.read_bytes() == before[:100]


@pytest.mark.parametrize("value", ["1_0", "١", "0x10", " 1e3"])
def test_an_integer_flag_takes_decimal_digits_only(capsys, value):
    """int() also reads "1_0" as 10 and other scripts' digits ("١" is 1): not on a command line."""
    with pytest.raises(SystemExit) as stop:
        train.main([*QUICK, "--epochs", value])
    assert stop.value.code == 2 and "argument --epochs: expected an integer" in \
        capsys.readouterr().err


def test_an_empty_out_is_a_usage_error_not_the_default(tmp_path, capsys, monkeypatch):
    """In numpyvae.train and in reference.train (where it meant "no folder": a run trained
    and written nowhere)."""
    from reference import train as reference_train
    monkeypatch.chdir(tmp_path)
    assert train.main([*QUICK, "--out", ""]) == 2
    assert '--out "": an empty path' in err_line(capsys) and not (tmp_path / "runs").exists()
    monkeypatch.setattr(numpyvae.data, "load", lambda *a, **k: pytest.fail("trained"))
    assert reference_train.main(["--epochs", "1", "--out", ""]) == 2
    assert err_line(capsys) == ('error: --out "": an empty path; name the run folder (or leave '
                                '--out out to print the epochs only)')


@pytest.mark.parametrize("command", [evaluate, sample, reference_evaluate])
def test_an_empty_checkpoint_is_a_usage_error(tmp_path, capsys, monkeypatch, run_dir, command):
    """Planted: a checkpoint.npz in the working folder, which the empty path would have read
    (evaluate and sample exited 1 with "checkpoint.npz: no such checkpoint file" without one)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoint.npz").write_bytes((run_dir / "checkpoint.npz").read_bytes())
    with pytest.raises(SystemExit) as stop:
        command.main([""])
    assert stop.value.code == 2 and "argument checkpoint: expected a run folder or a " \
        "checkpoint file, got ''" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_gradcheck_refuses_an_empty_run_as_evaluate_does(tmp_path, capsys, monkeypatch, run_dir):
    """Planted: a checkpoint.npz in the working folder, which `--run ''` read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoint.npz").write_bytes((run_dir / "checkpoint.npz").read_bytes())
    with pytest.raises(SystemExit) as stop:
        gradcheck.main(["--run", ""])
    assert stop.value.code == 2 and "argument --run: expected a run folder or a checkpoint " \
        "file, got ''" in capsys.readouterr().err


def test_a_path_with_control_characters_keeps_the_error_on_one_line(tmp_path, capsys):
    """Oracle: err_line (exactly one line). A newline in the name a user gave split the error
    in two, and an escape sequence in it reached the terminal raw; both are written as escapes."""
    name = str(tmp_path / "run\nfolder\x1b[31m")
    assert evaluate.main([name]) == 1
    line = err_line(capsys)
    assert "run\\nfolder\\x1b[31m" in line and "no such checkpoint file" in line
    assert "\x1b" not in line


def raw_controls(text):
    """The control characters in a command's output other than its own line ends (and the
    progress bars' carriage returns)."""
    return sorted({c for c in text if (c < " " and c not in "\n\r") or c == "\x7f"})


def test_paths_with_control_characters_are_escaped_in_every_line(tmp_path, capsys):
    """Oracle: raw_controls (none) and the names as escapes, on their one line. The lines that
    name a run folder or an output (train's first line, `resuming … from` and `done:`, the
    `wrote` lines of evaluate, sample, reference.evaluate and benchmarks.throughput,
    gradcheck's first line) printed the name as given, so an escape sequence in it reached the
    terminal raw and a newline split the line. Planted: the name itself, printed raw, is
    caught."""
    weird = "run\nfolder\x1b[31m"
    assert raw_controls(f"done: {weird}\n") == ["\x1b"]
    run = tmp_path / weird
    assert train.main([*QUICK, "--epochs", "1", "--out", str(run)]) == 0
    assert train.main([*QUICK, "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert evaluate.main([str(run), "--k", "2", "--limit", "5",
                          "--json", str(tmp_path / "e\x1b[2J.json")]) == 0
    assert sample.main([str(run), "--n", "4", "--out", str(tmp_path / "s\x07.png")]) == 0
    assert gradcheck.main(["--run", str(run), "--batch-size", "4"]) == 0
    assert reference_evaluate.main([str(run), "--k", "2", "--limit", "5",
                                    "--json", str(tmp_path / "r\x1b[1m.json")]) == 0
    assert throughput.main([*TINY_THROUGHPUT, "--json", str(tmp_path / "t\x0b.json")]) == 0
    out, err = capsys.readouterr()
    assert raw_controls(out + err) == [], (out, err)
    lines = out.splitlines()
    run_shown = f"{tmp_path}/run\\nfolder\\x1b[31m"
    assert f"done: {run_shown}" in lines
    assert any(line.startswith("resuming at epoch 2, from "
                               f"{run_shown}/checkpoint.npz, ") for line in lines), lines
    for name in ("e\\x1b[2J.json", "s\\x07.png", "r\\x1b[1m.json", "t\\x0b.json"):
        assert f"wrote {tmp_path}/{name}" in lines, (name, lines)
    assert any(line.startswith(f"gradcheck: {run_shown}: ") for line in lines)


def test_train_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    taken = tmp_path / "notes.json"
    taken.write_text("mine")
    assert train.main([*QUICK, "--out", str(taken)]) == 2
    assert "a file is there, not a folder" in err_line(capsys) and taken.read_text() == "mine"


@pytest.mark.parametrize("flag", ["--steps", "--between"])
def test_sample_refuses_interpolation_flags_without_interpolate(run_dir, capsys, flag):
    value = ["5"] if flag == "--steps" else ["2", "3"]
    with pytest.raises(SystemExit) as stop:
        sample.main([str(run_dir), flag, *value])
    assert stop.value.code == 2 and "add --interpolate" in capsys.readouterr().err


@pytest.mark.parametrize("command", [reference_evaluate.main, throughput.main])
def test_an_empty_data_dir_is_refused_everywhere(command, run_dir, capsys):
    argv = [str(run_dir)] if command is reference_evaluate.main else []
    with pytest.raises(SystemExit) as stop:
        command([*argv, "--data-dir", ""])
    assert stop.value.code == 2 and "--data-dir" in capsys.readouterr().err


def test_a_diverging_run_stops_in_one_line(tmp_path):
    """--lr 1e30: the loss overflows within a few steps. Oracle: exit 3 (a non-finite loss) and
    one line — numpy's overflow warnings on the way would bury it."""
    out = tmp_path / "run"
    code = fake_mnist.PRELUDE.format(tests=TESTS) + (
        f"sys.exit(main({[*QUICK, '--lr', '1e30', '--epochs', '1', '--out', str(out)]!r}, cli=True))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    lines = [l for l in done.stderr.replace("\r", "\n").splitlines()
             if l.strip() and "batch" not in l]
    assert done.returncode == 3 and len(lines) == 1 and "non-finite" in lines[0], done.stderr
