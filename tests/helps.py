"""Commands' --help, many in one Python child: each module run as `python -m` runs it (runpy,
as __main__, its package imported while sys.argv[0] is "-m"), one after another, so that one
start-up and one import of torch, jax and numba serve them all (eight children took half a
minute on 2 cores). Before each, the project's own modules (numpyvae, reference, benchmarks)
are dropped from sys.modules, so that each module imports them afresh, as in a process of its
own: one that uses a module it never imports fails here too, whatever ran before it.

The child writes each module's help to its own stdout, as `python -m MODULE --help` would, then
a line break and a line of its own: MARK, the module, its exit status (or the traceback it
raised, in ASCII).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@ --help done @@"
PROJECT = ("numpyvae", "reference", "benchmarks")
CHILD = """
import runpy, sys, traceback, warnings
warnings.simplefilter("ignore", RuntimeWarning)    # "found in sys.modules …": run again as main
mark, project, modules = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
print(mark, "optimize", sys.flags.optimize, sep="\\t", flush=True)
for module in modules:
    for name in [n for n in sys.modules if n.split(".")[0] in project]:
        del sys.modules[name]
    sys.argv = ["-m", "--help"]       # as python -m has it while the package imports
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = "no exit"
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    except BaseException:
        code = "raised " + ascii(traceback.format_exc())
    sys.stdout.flush()
    print()                           # ends a help that did not end its last line
    print(mark, module, code, sep="\\t", flush=True)
"""


def helps(modules, *flags, env=None):
    """(sys.flags.optimize, {module: (exit status as text, the help it wrote)}) from one child
    `python *flags`, whose own exit must be 0; its output decoded as its encoding allows."""
    done = subprocess.run([sys.executable, *flags, "-c", CHILD, MARK, ",".join(PROJECT),
                           *modules], cwd=ROOT, capture_output=True, env=env, timeout=300)
    text = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, text + done.stderr.decode("utf-8", "replace")
    optimize, found, lines = None, {}, []
    for line in text.splitlines():
        if not line.startswith(MARK + "\t"):
            lines.append(line)
            continue
        _, what, code = line.split("\t", 2)
        if what == "optimize":
            optimize = int(code)
        else:
            found[what], lines = (code, "\n".join(lines)), []
    assert list(found) == list(modules), (list(found), text)
    return optimize, found
