"""The house's layers and a library import without side effects.

Oracles: (1) import-linter (`lint-imports`), holding the code's own imports against the layers
pyproject.toml states — and the same check on a copy of the tree with one upward import planted
(the oracle (numpyvae/oracle) importing the switch), which must break it; (2) the interpreter
itself: what `import numpyvae` puts in sys.modules and which signal handlers it leaves, in a
fresh process, against a planted import of matplotlib in the package, which must be seen;
(3) the source: no import inside a function in numpyvae/ without the reason beside it.
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or \
    shutil.which("lint-imports")

needs_linter = pytest.mark.skipif(LINT is None, reason="import-linter is not installed")


def lint(tree):
    return subprocess.run([LINT, "--no-cache"], cwd=tree, capture_output=True, text=True,
                          timeout=120)


@needs_linter
def test_the_layers_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def copy_of_the_tree(tmp_path):
    for name in ("numpyvae", "reference", "benchmarks"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@needs_linter
def test_an_upward_import_breaks_the_layers(tmp_path):
    """Planted: the oracle's loss imports the switch above it."""
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "numpyvae" / "oracle" / "loss.py", "a") as f:
        f.write("\nfrom .. import backend  # noqa: E402,F401  (planted)\n")
    done = lint(tree)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert "numpyvae.oracle.loss -> numpyvae.backend" in done.stdout, done.stdout


SIDE_EFFECTS = """
import signal, sys
before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
import numpyvae as nv
nv.VAE, nv.Adam, nv.param_shapes, nv.data.Batches, nv.likelihood.log_likelihood
after = {s: signal.getsignal(s) for s in before}
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib", "tqdm", "torch", "jax"})
print(heavy, before == after)
"""


def side_effects(code, cwd):
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_library_loads_no_pictures_and_sets_no_handler():
    """A program of one's own that imports numpyvae and uses its API (as `python -m` does,
    argv[0] "-m", the case the package once took for a command) loads neither matplotlib nor
    tqdm, and leaves every signal handler as it was."""
    assert side_effects("import sys; sys.argv[0] = '-m'\n" + SIDE_EFFECTS, ROOT) == "[] True"


def test_the_side_effect_check_sees_a_planted_import(tmp_path):
    """Planted: the package imports matplotlib and sets a SIGTERM handler when imported."""
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "numpyvae" / "__init__.py", "a") as f:
        f.write("\nimport signal as _s, matplotlib  # noqa: E402,F401  (planted)\n"
                "_s.signal(_s.SIGTERM, lambda *a: None)\n")
    assert side_effects(SIDE_EFFECTS, tree) == "['matplotlib'] False"


def imports_inside_functions(path):
    """(line, text) of each import inside a function of `path` with no comment on its line."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) \
                        and "#" not in lines[inner.lineno - 1]:
                    found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return found


def test_no_import_hides_inside_a_function():
    """Every import of numpyvae/ is at the top of its module (or in a command's start-up
    block); one inside a function says why on its line (an optional dependency, say)."""
    hidden = {str(p.relative_to(ROOT)): found for p in sorted((ROOT / "numpyvae").rglob("*.py"))
              if (found := imports_inside_functions(p))}
    assert not hidden, hidden


def test_the_hidden_import_check_is_not_vacuous(tmp_path):
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    import json\n    import os  # the reason\n")
    assert imports_inside_functions(planted) == [(2, "import json")]
