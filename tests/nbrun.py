"""docs/notebook.ipynb run as Jupyter runs it, without Jupyter: every code cell in order, in one
namespace, what each cell prints and the figures it shows becoming its outputs, as a notebook
stores them — a stdout stream, then the figure as image/png, in the order they came.

The test suite executes the notebook with it (tests/system/test_notebook.py, on synthetic data);

    python tests/nbrun.py

stores the notebook with the outputs of a real run — MNIST from ~/datasets, fetched on first
use, and the notebook's own 20 epochs (about a minute on 2 cores) — compactly: PNG figures at
DPI dots per inch and the printed lines, nothing else (no progress bars, no widget state).
"""
import base64
import contextlib
import io
import json
import sys
import traceback
from pathlib import Path

import matplotlib

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebook.ipynb"
DPI = 72                      # Jupyter's inline figures' resolution: small files, readable


class CellFailed(Exception):
    """A cell raised; the message names the cell and holds its traceback."""


def read(path=NOTEBOOK):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def run(nb):
    """Execute the notebook `nb` (its JSON, a dict): (namespace, [(cell index, outputs)]) for
    its code cells, outputs in nbformat 4's shape. Matplotlib draws on Agg; plt.show() and a
    cell's end turn the open figures into outputs, as the inline backend does."""
    backend = matplotlib.get_backend()
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt         # after the backend is chosen
    namespace, results = {"__name__": "__main__"}, []
    real_show = plt.show
    try:
        for i, cell in enumerate(nb["cells"]):
            if cell["cell_type"] != "code":
                continue
            printed, outputs = io.StringIO(), []

            def show(*args, **kwargs):
                text = printed.getvalue()
                if text:
                    outputs.append({"name": "stdout", "output_type": "stream",
                                    "text": text.splitlines(keepends=True)})
                    printed.seek(0)
                    printed.truncate()
                for number in plt.get_fignums():
                    fig = plt.figure(number)
                    png = io.BytesIO()
                    fig.savefig(png, format="png", dpi=DPI, bbox_inches="tight")
                    outputs.append({"data": {"image/png": base64.b64encode(png.getvalue())
                                             .decode("ascii"), "text/plain": [repr(fig)]},
                                    "metadata": {}, "output_type": "display_data"})
                plt.close("all")
            plt.show = show
            try:
                with contextlib.redirect_stdout(printed):
                    exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}, cell {i}", "exec"),
                         namespace)
                show()                               # what is left at the cell's end
            except Exception:
                raise CellFailed(f"{NOTEBOOK.name}: cell {i} failed\n"
                                 f"{traceback.format_exc()}") from None
            finally:
                plt.close("all")
            results.append((i, outputs))
    finally:
        plt.show = real_show
        matplotlib.use(backend, force=True)
    return namespace, results


def store(path=NOTEBOOK):
    """Run the notebook at `path` as it is and write it back with its outputs."""
    nb = read(path)
    _, results = run(nb)
    for count, (i, outputs) in enumerate(results, 1):
        nb["cells"][i]["outputs"] = outputs
        nb["cells"][i]["execution_count"] = count
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    store(sys.argv[1] if len(sys.argv) > 1 else NOTEBOOK)
