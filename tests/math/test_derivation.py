"""docs/derivation.md names code that exists, and every gradient function is in it.

Oracle: the modules themselves. Each `numpyvae/<path>.py: <name>` the derivation cites must
be defined there (so a rename cannot leave the document pointing at nothing), and every
function of the math modules that computes a gradient — by name, `*backward*` or `*grad*` —
must be cited (so a new one cannot land underived). The formulas' correctness is checked by
the Torch and finite-difference tests; this checks the document's links to the code.
"""
import importlib
import inspect
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "derivation.md"
TEXT = DOC.read_text(encoding="utf-8")
CITED = sorted(set(re.findall(r"`numpyvae/([\w/]+)\.py: ([\w.]+)`", TEXT)))
# Every module of the oracle and the fast path, as its path below numpyvae/.
MATH_MODULES = ("oracle/activations", "oracle/loss", "oracle/linear", "oracle/network",
                "oracle/adam", "oracle/likelihood", "oracle/binarize", "oracle/iwae",
                "fast/kernels", "fast/fused", "fast/adam", "fast/binarize")
# Gradient code not found by name: the fused passes that also produce a gradient.
ALSO_REQUIRED = [("fast/kernels", "bernoulli_logits"), ("fast/kernels", "adam_step"),
                 ("fast/kernels", "reparameterize"), ("oracle/network", "backward"),
                 ("oracle/adam", "numpy_update"), ("fast/fused", "FusedStep.loss_and_grads")]


def resolve(module, dotted):
    obj = importlib.import_module("numpyvae." + module.replace("/", "."))
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_the_derivation_cites_code():
    assert len(CITED) >= 30, f"only {len(CITED)} citations of the form `numpyvae/x.py: name`"


@pytest.mark.parametrize("module,name", CITED, ids=[f"{m}.{n}" for m, n in CITED])
def test_every_citation_exists(module, name):
    try:
        resolve(module, name)
    except (ImportError, AttributeError):
        pytest.fail(f"{DOC.name} cites `numpyvae/{module}.py: {name}`, which does not exist; "
                    f"update the document to the code's name")


def gradient_functions():
    for module in MATH_MODULES:
        mod = importlib.import_module("numpyvae." + module.replace("/", "."))
        for name, obj in vars(mod).items():
            if name.startswith("_") or not re.search(r"backward|grad", name):
                continue
            if callable(obj) and getattr(obj, "__module__", mod.__name__) == mod.__name__ \
                    and not inspect.isclass(obj):
                yield module, name
    yield from ALSO_REQUIRED


@pytest.mark.parametrize("module,name", sorted(set(gradient_functions())))
def test_every_gradient_function_is_derived(module, name):
    resolve(module, name)
    assert f"`numpyvae/{module}.py: {name}`" in TEXT or (
        # kernels named together with a sibling, e.g. "`numpyvae/kernels.py: bias_tanh` ...
        # `bias_tanh_f32`", count when the module is cited and the name appears in code.
        f"`numpyvae/{module}.py: " in TEXT and f"`{name}`" in TEXT), \
        f"numpyvae/{module}.py: {name} computes a gradient but {DOC.name} does not derive it"
