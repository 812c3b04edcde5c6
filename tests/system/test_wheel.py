"""The wheel installs numpyvae and nothing else.

Oracle: a fresh virtualenv that holds the built wheel and the dependencies, but not the
checkout. `reference` and `benchmarks` are the repository's tools, not the distribution's:
installed as top-level packages they would collide with other projects' of the same names.

Cheap by construction (≈ 10 s): the wheel is built from a copy of the sources with the running
environment's setuptools where it can build one (no build isolation, nothing downloaded; else
pip fetches setuptools into an isolated build environment) and installed without its
dependencies; the fresh environment sees the running environment's packages through a
folder of symlinks that leaves out numpyvae and any `reference` or `benchmarks`, so nothing
can be imported from the checkout or from an older install. That the wheel *declares* its
dependencies is checked in its METADATA instead.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")      # Python ≥ 3.11; pyproject is read as TOML

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "numpyvae", "reference", "benchmarks")
# What the dependency view leaves out: the project itself, the tools it must not install,
# and site-packages' own start-up hooks (.pth files, an editable install's finder).
HIDDEN = re.compile(r"^(numpyvae|reference|benchmarks|__editable__|__pycache__)|\.pth$",
                    re.IGNORECASE)


def _can_build_here():
    """Whether this environment can build the wheel without fetching anything: setuptools
    ≥ 61 (pyproject metadata), with bdist_wheel built in (≥ 70.1) or the `wheel` package."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in re.findall(r"\d+", setuptools.__version__)[:2])
    if version >= (70, 1):
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return version >= (61, 0)


def build_wheel(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    # Build with this environment's setuptools when it can; else pip fetches one (isolated).
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", *isolation,
           "-w", str(dist), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = dist.glob("numpyvae-*.whl")
    return wheel


def fresh_env(tmp_path):
    """A virtualenv without pip whose only view of the running environment is a folder of
    symlinks to its site-packages entries, minus HIDDEN."""
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    deps = tmp_path / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not HIDDEN.search(entry.name):
            (deps / entry.name).symlink_to(entry)
    (site / "zz_running_env_deps.pth").write_text(f"{deps}\n")
    return python, site


def test_wheel_installs_numpyvae_only(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"numpyvae"} and len(dist_info) == 1, \
        f"the wheel holds {sorted(tops)}"

    # It declares exactly pyproject's dependencies (a --no-deps install below does not check).
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    declared = {l.split(":", 1)[1].strip().replace(" ", "") for l in meta.splitlines()
                if l.startswith("Requires-Dist:") and "extra ==" not in l}
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert declared == {d.replace(" ", "") for d in wanted}

    python, site = fresh_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "--no-deps", "--no-index", "--no-cache-dir", str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"installing the wheel failed:\n{done.stdout}\n{done.stderr}"

    away = tmp_path / "elsewhere"          # not the checkout: `python -c` puts the cwd on sys.path
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MPLBACKEND"] = "Agg"

    def py(*args):
        return subprocess.run([str(python), *args], cwd=away, env=env, capture_output=True,
                              text=True)

    where = py("-c", "import numpyvae; print(numpyvae.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout

    help_ = py("-m", "numpyvae.train", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "--epochs" in help_.stdout and "--backend" in help_.stdout

    for tool in ("reference", "benchmarks"):
        r = py("-c", f"import {tool}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, \
            f"`import {tool}` in the wheel's environment: rc {r.returncode}\n{r.stdout}{r.stderr}"


TOOLS = ("reference.train", "benchmarks.throughput")
# `python -m TOOL --help` for each, in one interpreter (torch is imported once): runpy does what
# -m does, and `python -c` puts the current folder, the checkout, on sys.path as -m does.
RUN_TOOLS = """
import runpy, sys
for tool in sys.argv[1:]:
    sys.argv = [tool, "--help"]
    try:
        runpy.run_module(tool, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        assert stop.code in (0, None), f"{tool} --help exited with {stop.code}"
    print(f"== {tool} ran")
"""


def test_the_tools_still_run_from_a_checkout():
    r = subprocess.run([sys.executable, "-c", RUN_TOOLS, *TOOLS], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr
    for tool in TOOLS:
        assert f"== {tool} ran" in r.stdout and f"python -m {tool}" in r.stdout, r.stdout
