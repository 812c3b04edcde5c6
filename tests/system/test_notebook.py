"""docs/notebook.ipynb runs top to bottom.

Oracle: the notebook itself, executed as a person would run it — every code cell in order, in
one namespace — on the synthetic stand-in for MNIST (tests/fake_mnist.py, installed where the
notebook calls numpyvae.data.load, so nothing is fetched) with NUMPYVAE_NOTEBOOK_EPOCHS=2.
A cell that raises fails the test, naming the cell. No Jupyter is needed: the notebook holds
plain Python (no magics, no shell escapes), and matplotlib draws on its Agg canvas.
"""
import json
import traceback
from pathlib import Path

import matplotlib
import numpy as np
import pytest

import fake_mnist
import numpyvae.data

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebook.ipynb"
EPOCHS = 2


def code_cells():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    return [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code"]


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"cells {dirty} of {NOTEBOOK.name} hold outputs; clear them before committing"


def test_notebook_has_plain_python_only():
    for i, source in code_cells():
        magic = [l for l in source.splitlines() if l.lstrip().startswith(("%", "!"))]
        assert not magic, f"cell {i} has IPython syntax the runner cannot execute: {magic}"


def test_notebook_runs_top_to_bottom(monkeypatch):
    calls = []

    def load(name, split="train", data_dir=None):
        calls.append((name, split))
        return fake_mnist.load(name, split, data_dir)

    monkeypatch.setattr(numpyvae.data, "load", load)
    monkeypatch.setenv("NUMPYVAE_NOTEBOOK_EPOCHS", str(EPOCHS))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    backend = matplotlib.get_backend()
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__main__"}
    try:
        for i, source in code_cells():
            try:
                exec(compile(source, f"{NOTEBOOK.name}, cell {i}", "exec"), namespace)
            except Exception:
                pytest.fail(f"{NOTEBOOK.name}: cell {i} failed\n{traceback.format_exc()}",
                            pytrace=False)
            finally:
                plt.close("all")
    finally:
        matplotlib.use(backend, force=True)

    # It used the data it was given, and it learned from it.
    assert sorted(calls) == [("mnist", "test"), ("mnist", "train")]
    assert namespace["epochs"] == EPOCHS
    history = namespace["history"]
    assert len(history["train"]) == len(history["test"]) == EPOCHS
    assert np.all(np.isfinite(history["test"]))
    assert history["test"][-1] < history["test"][0]
