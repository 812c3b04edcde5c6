"""docs/notebook.ipynb runs top to bottom, and is stored with what it shows.

Oracle: the notebook itself, executed as a person would run it — every code cell in order, in
one namespace (tests/nbrun.py, which also stores it) — on the synthetic stand-in for MNIST
(tests/fake_mnist.py, installed where the notebook calls numpyvae.data.load, so nothing is
fetched) with NUMPYVAE_NOTEBOOK_EPOCHS=2. A cell that raises fails the test, naming the cell.
No Jupyter is needed: the notebook holds plain Python (no magics, no shell escapes), and
matplotlib draws on its Agg canvas. The stored outputs are a real run's: on a code host the
notebook shows its figures; each cell's stored outputs have the kinds this execution gives.
"""
import base64
import json

import numpy as np
import pytest

import fake_mnist
import nbrun
import numpyvae.data

EPOCHS = 2
MAX_BYTES = 400_000             # the figures at nbrun.DPI and the printed lines: ≈ 130 KB


def code_cells():
    nb = nbrun.read()
    assert nb["nbformat"] == 4
    return [(i, "".join(c["source"]), c) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code"]


def test_notebook_is_stored_with_its_figures_and_nothing_else():
    """Every cell that shows a figure holds it as a PNG; what cells print is stored as plain
    lines — no progress bar's carriage returns or escapes — and the file stays small."""
    cells = code_cells()
    assert [c["execution_count"] for _, _, c in cells] == list(range(1, len(cells) + 1))
    for i, source, cell in cells:
        kinds = [o["output_type"] for o in cell["outputs"]]
        assert set(kinds) <= {"stream", "display_data"}, (i, kinds)
        pictures = [base64.b64decode(o["data"]["image/png"]) for o in cell["outputs"]
                    if o["output_type"] == "display_data"]
        assert len(pictures) == source.count("plt.show()"), i
        assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures), i
        text = "".join(t for o in cell["outputs"] if o["output_type"] == "stream"
                       for t in o["text"])
        assert "\r" not in text and "\x1b" not in text, (i, text)
    shown = sum(source.count("plt.show()") for _, source, _ in cells)
    assert shown >= 5 and nbrun.NOTEBOOK.stat().st_size < MAX_BYTES
    assert "arithmetic: numpy" in "".join(cells[0][2]["outputs"][0]["text"])


def test_notebook_has_plain_python_only():
    for i, source, _ in code_cells():
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
    nb = nbrun.read()
    try:
        namespace, results = nbrun.run(nb)
    except nbrun.CellFailed as e:
        pytest.fail(str(e), pytrace=False)

    # It used the data it was given, and it learned from it.
    assert sorted(calls) == [("mnist", "test"), ("mnist", "train")]
    assert namespace["epochs"] == EPOCHS
    history = namespace["history"]
    assert len(history["train"]) == len(history["test"]) == EPOCHS
    assert np.all(np.isfinite(history["test"]))
    assert history["test"][-1] < history["test"][0]
    # What it shows has the kinds the stored outputs have, cell by cell: they are this code's.
    assert [[o["output_type"] for o in outputs] for _, outputs in results] == \
        [[o["output_type"] for o in nb["cells"][i]["outputs"]] for i, _ in results]
    json.dumps([outputs for _, outputs in results])          # storable as they are
