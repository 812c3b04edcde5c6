"""The commands as a user meets them: `numpyvae` (the console script) and `python -m numpyvae`
name them all and run each by name, and each one's --help works, also under `python -OO`
(which strips the docstrings parsers are built from).

Oracle: the modules themselves (each command named exists), the exit status and first line of
--help, and the installed console script's own entry point.
"""
import importlib.metadata
import importlib.util
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helps import helps
from numpyvae.__main__ import COMMANDS, SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
NAMED = [f"numpyvae.{c}" for c in re.findall(r"^  numpyvae ([a-z]+)", COMMANDS, re.M)] + \
    re.findall(r"python -m ((?:reference|benchmarks)\.[a-z_]+)", COMMANDS)


def test_numpyvae_names_every_command_and_each_exists(capsys):
    assert main([]) == 0 and capsys.readouterr().out == COMMANDS
    assert {"numpyvae.train", "numpyvae.evaluate", "numpyvae.sample", "reference.train",
            "reference.evaluate", "reference.gradcheck", "benchmarks.throughput",
            "benchmarks.sweep"} == set(NAMED)
    for module in NAMED:
        assert importlib.util.find_spec(module) is not None, module
    assert main(["trian"]) == 2 and "is not a command" in capsys.readouterr().err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_numpyvae_command_runs_that_command(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m numpyvae {command} ")


def test_the_console_script_is_numpyvaes_main():
    """pyproject.toml's [project.scripts], as the installed distribution records it."""
    scripts = [e for e in importlib.metadata.entry_points(group="console_scripts")
               if e.name == "numpyvae"]
    assert [e.value for e in scripts] == ["numpyvae.__main__:main"]


@pytest.fixture(scope="module")
def helps_under_OO():
    """Every command's --help, in one `python -OO` child (tests/helps.py)."""
    optimize, found = helps(NAMED, "-OO")
    assert optimize == 2, "python -OO did not take effect"
    return found


@pytest.mark.parametrize("module", NAMED)
def test_help_runs_even_without_docstrings(module, helps_under_OO):
    code, text = helps_under_OO[module]
    assert code == "0" and text.startswith("usage: "), (code, text)


def test_python_m_numpyvae_takes_a_command(monkeypatch, capsys):
    """Each command's usage is the command as typed: `python -m numpyvae sample`, and through
    the console script `numpyvae sample` (it said `python -m numpyvae.sample` for both)."""
    done = subprocess.run([sys.executable, "-m", "numpyvae", "sample", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m numpyvae sample ")
    # as the console script pip writes calls it: main() with its own path in sys.argv[0] (and,
    # as the program, it takes SIGTERM and SIGHUP over: given back to pytest afterwards)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/numpyvae", "train", "--epoch", "2"])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with pytest.raises(SystemExit) as done:
            main()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert done.value.code == 2 and capsys.readouterr().err.splitlines() == [
        "usage: numpyvae train [flags]   (--help lists every flag)",
        "numpyvae train: error: unrecognized arguments: --epoch 2 (did you mean --epochs?)"]
