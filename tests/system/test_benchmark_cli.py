"""The benchmarks' command lines: every flag typed and bounded, every output path checked before
anything is timed, Ctrl-C and a measurement that cannot be reported in one line.

Oracle: the exit status and the one line a user sees (argparse's usage error, exit 2;
numpyvae.run.cli.run_command's "error: …", exit 1 or 2, and "interrupted", exit 130), and — for
what must be refused before any work — a stand-in for the machine report, the first step of
every run, that fails the test if it is reached. Nothing here is timed: the timings are
replaced by planted ones, or never reached.
"""
import json
import math
import sys

import pytest

import fake_mnist
from benchmarks import machine, peers, sweep, throughput

COMMANDS = {"throughput": throughput, "sweep": sweep}
TINY = ["--steps", "3", "--epochs", "1", "--batch-size", "100", "--hidden-dim", "16",
        "--ll-images", "0", "--impls", "numpyvae numpy"]
SWEEP_TINY = ["--steps", "3", "--epochs", "1", "--batch-sizes", "100", "--hidden-dims", "16",
              "--impls", "numpyvae numpy"]


def never_run(monkeypatch):
    """The machine report, where every run starts, fails the test if reached."""
    def report(*args, **kwargs):
        raise AssertionError("the benchmark started although its flags were to be refused")
    monkeypatch.setattr(machine, "report", report)


def quiet_machine(monkeypatch):
    """A machine report without the libraries' probing (what the tests here do not check)."""
    monkeypatch.setattr(machine, "report", lambda module, argv=None: dict(
        cpu="test cpu", cores=1, blas_kernel=None))


def usage_line(capsys):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[-1].startswith("python -m benchmarks.") and ": error: " in lines[-1], err
    return lines[-1]


BAD_FLAGS = [
    ("throughput", ["--impls", ",,,"], "--impls: none in ',,,'"),
    ("throughput", ["--impls", "numpyvae numba,torch eagre"], "--impls: unknown 'torch eagre'"),
    ("throughput", ["--batch-size", "0"], "--batch-size: expected an integer from 1"),
    ("throughput", ["--batch-size", str(10**12)], "--batch-size: expected an integer from 1"),
    ("throughput", ["--epochs", "0"], "--epochs: expected an integer from 1"),
    ("throughput", ["--hidden-dim", "0"], "--hidden-dim: expected an integer from 1"),
    ("throughput", ["--hidden-dim", str(2**64)], "--hidden-dim: expected an integer from 1"),
    ("throughput", ["--latent-dim", "0"], "--latent-dim: expected an integer from 1"),
    ("throughput", ["--seed", "-1"], "--seed: expected an integer from 0 to 4,294,967,295"),
    ("throughput", ["--seed", str(2**32)], "--seed: expected an integer from 0 to 4,294,967,295"),
    ("throughput", ["--k", "0"], "--k: expected an integer from 1"),
    ("throughput", ["--steps", "-1"], "--steps: expected an integer from 0"),
    ("throughput", ["--ll-images", "-3"], "--ll-images: expected an integer from 0"),
    ("throughput", ["--ll-images", "10001"], "--ll-images: expected an integer from 0 to 10,000"),
    ("throughput", ["--samples", "0"], "--samples: expected an integer from 1"),
    ("throughput", ["--activation", "relu"], "--activation: invalid choice: 'relu'"),
    ("throughput", ["--objective", "elbow"], "--objective: invalid choice: 'elbow'"),
    ("throughput", ["--preset", "burda"], "--preset: invalid choice: 'burda'"),
    ("sweep", ["--impls", ",,"], "--impls: none in ',,'"),
    ("sweep", ["--batch-sizes", ",,"], "--batch-sizes: expected comma-separated integers"),
    ("sweep", ["--batch-sizes", "16,0"], "--batch-sizes: expected an integer from 1"),
    ("sweep", ["--batch-sizes", "16,16"], "none twice"),
    ("sweep", ["--hidden-dims", str(10**12)], "--hidden-dims: expected an integer from 1"),
    ("sweep", ["--steps", "-1"], "--steps: expected an integer from 0"),
    ("sweep", ["--images", "0"], "--images: expected an integer from 1"),
    ("sweep", ["--epochs", "0"], "--epochs: expected an integer from 1"),
    ("sweep", ["--seed", "-1"], "--seed: expected an integer from 0"),
]


@pytest.mark.parametrize("command, argv, said", BAD_FLAGS,
                         ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_usage_line_before_anything_runs(monkeypatch, capsys, command, argv,
                                                           said):
    never_run(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        COMMANDS[command].main(argv)
    assert stop.value.code == 2
    assert said in usage_line(capsys)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_names_its_default(command):
    """Oracle: the parser's own list of its flags; a switch (store_true) is off by default."""
    parser = COMMANDS[command].build_parser()
    for action in parser._actions:
        if action.option_strings and action.nargs != 0:
            assert "default" in (action.help or ""), action.option_strings


def bad_paths(tmp_path):
    (tmp_path / "a file").write_text("")
    (tmp_path / "a folder").mkdir()
    return {"a missing folder": (str(tmp_path / "missing" / "out.json"), "does not exist"),
            "below a file": (str(tmp_path / "a file" / "out.json"), "is not a folder"),
            "a folder": (str(tmp_path / "a folder"), "that is a folder"),
            "a folder's name": (str(tmp_path / "new") + "/", "that is a folder"),
            "empty": ("", "an empty path"),
            "unwritable": ("/proc/out.json", "cannot write in /proc")}


@pytest.mark.parametrize("command, flag", [("throughput", "--json"), ("sweep", "--json"),
                                           ("sweep", "--plot")])
@pytest.mark.parametrize("case", ["a missing folder", "below a file", "a folder",
                                  "a folder's name", "empty", "unwritable"])
def test_an_unwritable_output_is_refused_before_anything_is_timed(monkeypatch, capsys,
                                                                  tmp_path, command, flag, case):
    if case == "unwritable" and not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    never_run(monkeypatch)
    path, said = bad_paths(tmp_path)[case]
    others = {"--json": str(tmp_path / "ok.json"), "--plot": str(tmp_path / "ok.png")}
    argv = [flag, path] + [a for f, p in others.items() if f != flag and command == "sweep"
                           for a in (f, p)]
    assert COMMANDS[command].main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}") and err.count("\n") == 1 and said in err, err


def test_sweep_refuses_one_file_for_json_and_plot(monkeypatch, capsys, tmp_path):
    never_run(monkeypatch)
    same = str(tmp_path / "out")
    assert sweep.main(["--json", same, "--plot", same]) == 2
    assert capsys.readouterr().err == (f"error: --json and --plot are both {same}; give each "
                                       f"its own file\n")


def test_no_torch_leaving_no_implementation_is_a_usage_error(monkeypatch, capsys):
    never_run(monkeypatch)
    assert throughput.main(["--impls", "torch eager", "--no-torch"]) == 2
    assert capsys.readouterr().err.startswith("error: --no-torch leaves none of --impls")


def test_no_implementation_that_can_run_is_one_line_exit_1(monkeypatch, capsys):
    """Only jax asked for, jax not installed: nothing to time, so no (empty) table."""
    fake_mnist.install(monkeypatch)
    quiet_machine(monkeypatch)
    monkeypatch.setitem(sys.modules, "jax", None)                   # `import jax` fails
    assert throughput.main(TINY[:-2] + ["--impls", "jax jit"]) == 1
    assert capsys.readouterr().err == ("error: none of jax jit can run here (see the lines "
                                       "above); install one, or ask --impls for another\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_is_one_line_exit_130(monkeypatch, capsys, tmp_path, command):
    fake_mnist.install(monkeypatch)
    quiet_machine(monkeypatch)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(throughput, "time_epochs", interrupted)
    out = tmp_path / "out.json"
    argv = (TINY if command == "throughput" else
            SWEEP_TINY + ["--plot", str(tmp_path / "out.png")]) + ["--json", str(out)]
    assert COMMANDS[command].main(argv) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_timing_that_is_not_finite_is_refused_not_reported(monkeypatch, capsys, tmp_path,
                                                             command):
    """A planted NaN epoch time: exit 1, one line naming the implementation, no table and no
    JSON (today's NaN would be printed and written as a bare NaN token)."""
    fake_mnist.install(monkeypatch)
    quiet_machine(monkeypatch)
    monkeypatch.setattr(throughput, "time_epochs",
                        lambda built, *args: {p.name: [math.nan] for p in built})
    out = tmp_path / "out.json"
    argv = (TINY if command == "throughput" else
            SWEEP_TINY + ["--plot", str(tmp_path / "out.png")]) + ["--json", str(out)]
    assert COMMANDS[command].main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err == ("error: numpyvae numpy: timings nan s are not all finite and "
                            "positive. Nothing is reported.\n")
    assert "timed numpyvae numpy" not in captured.out and "nan" not in captured.out
    assert not out.exists()


def test_json_is_standard_and_refuses_non_finite_numbers(tmp_path):
    """Oracle: json.loads with NaN/Infinity refused, the strict reading other tools do."""
    out = tmp_path / "out.json"
    throughput.write_json(out, dict(seconds=1.5, ratio=None))

    def refuse(token):
        raise AssertionError(token)
    assert json.loads(out.read_text(), parse_constant=refuse) == dict(seconds=1.5, ratio=None)
    with pytest.raises(ValueError):
        throughput.write_json(out, dict(seconds=math.nan))
    assert json.loads(out.read_text()) == dict(seconds=1.5, ratio=None)     # left whole


def test_a_failed_write_after_the_timing_is_one_line_exit_1(monkeypatch, capsys, tmp_path):
    """--json's folder was there when checked and is gone once the timing is done (as a full
    disk is found only when written): one line naming the flag and what the OS said, exit 1."""
    fake_mnist.install(monkeypatch)
    quiet_machine(monkeypatch)
    folder = tmp_path / "results"
    folder.mkdir()
    real = throughput.time_epochs

    def then_remove_the_folder(*args):
        times = real(*args)
        folder.rmdir()
        return times
    monkeypatch.setattr(throughput, "time_epochs", then_remove_the_folder)
    out = folder / "out.json"
    assert throughput.main(TINY + ["--json", str(out)]) == 1
    assert capsys.readouterr().err == (f"error: cannot write --json {out}: No such file or "
                                       f"directory\n")


def test_the_impls_type_names_every_implementation():
    """Oracle: benchmarks/peers.py's list."""
    assert throughput.impl_list(" numpyvae numpy , gemm floor openblas,") == [
        "numpyvae numpy", "gemm floor openblas"]
    with pytest.raises(Exception, match=", ".join(peers.all_names())):
        throughput.impl_list(",")


def test_a_preset_sets_the_network_batch_and_bound_and_flags_win_over_it():
    """Oracle: numpyvae.train's PRESETS, the values a run of the preset trains with."""
    def resolved(argv):
        args = throughput.trained(throughput.build_parser().parse_args(argv))
        return {k: getattr(args, k) for k in throughput.TRAINED}
    assert resolved([]) == throughput.TRAINED
    assert resolved(["--preset", "burda2015-iwae"]) == dict(
        batch_size=20, hidden_dim=200, latent_dim=50, activation="tanh", objective="iwae",
        samples=5, estimator="standard")
    # an ELBO asked of the bound's preset keeps its network and K, without an estimator
    assert resolved(["--preset", "burda2015-iwae", "--objective", "elbo", "--batch-size",
                     "7"]) == dict(batch_size=7, hidden_dim=200, latent_dim=50,
                                   activation="tanh", objective="elbo", samples=5,
                                   estimator=None)


@pytest.mark.parametrize("argv, said", [
    (["--estimator", "stl"], "error: --estimator stl: estimator 'stl' is an estimator of the "
                             "iwae objective's gradient; the elbo objective has none; use "
                             "--objective iwae, or drop --estimator"),
    (["--objective", "iwae", "--samples", "300"],
     "error: --samples 300 × --latent-dim 20 (its default) = 6000 noise values per image; at "
     "most 4096"),
    (["--preset", "burda2015-iwae", "--latent-dim", "1000"],
     "error: --samples 5 (--preset burda2015-iwae's) × --latent-dim 1000 = 5000 noise values"),
    (["--batch-size", "60000", "--latent-dim", "2", "--samples", "40"],
     "error: --batch-size 60000 × --samples 40 = 2400000 decoder rows a step; at most 60000")])
def test_a_bound_that_cannot_be_trained_is_one_line_before_anything_runs(monkeypatch, capsys,
                                                                         argv, said):
    never_run(monkeypatch)
    assert throughput.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(said), err
