"""The commands as a user meets them: `python -m numpyvae` names them all, and each one's
--help works, also under `python -OO` (which strips the docstrings parsers are built from).

Oracle: the modules themselves (each command named exists) and the exit status of --help.
"""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from numpyvae.__main__ import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]
NAMED = re.findall(r"python -m ([a-z_.]+)", COMMANDS)


def test_python_m_numpyvae_names_every_command_and_each_exists(capsys):
    assert main([]) == 0 and capsys.readouterr().out == COMMANDS
    assert {"numpyvae.train", "numpyvae.evaluate", "numpyvae.sample", "reference.train",
            "reference.evaluate", "reference.gradcheck", "benchmarks.throughput",
            "benchmarks.sweep"} == set(NAMED)
    for module in NAMED:
        assert importlib.util.find_spec(module) is not None, module
    assert main(["train"]) == 2 and "is not a command" in capsys.readouterr().err


@pytest.mark.parametrize("module", NAMED)
def test_help_runs_even_without_docstrings(module):
    done = subprocess.run([sys.executable, "-OO", "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: "), done.stderr
