"""The arithmetic a command computes with, in one record: the BLAS numpy calls (library, version,
kernel, and the environment variable that chose the kernel, if one did), its threads, whether
numba compiles, numpy's and numba's versions, and the CPU — or, for the PyTorch reference,
torch's version, device, BLAS, instruction set and threads.

Float32 results depend on every one of these in their last bits: OpenBLAS orders a product's
sums by kernel and thread count, and numba compiles for this CPU (or not at all, under
NUMBA_DISABLE_JIT). Twenty epochs carry those bits into a different, equally good model. So

- every command that computes prints its arithmetic in one line as it starts (`describe`),
    arithmetic: numpy 2.4.6, OpenBLAS 0.3.31 (kernel SkylakeX, OpenBLAS's choice for this
    CPU), 2 threads; numba 0.68.1, compiling; CPU AMD EPYC
- a run records it (config.json's and the checkpoint's "arithmetic": one entry per stretch of
  training that computed with one arithmetic, each with the [epoch, step] it began at), and
- a resumed run says in one line when its arithmetic is not the one recorded last
  (`resumed_line`); it goes on, and no longer repeats an uninterrupted run bit for bit.

benchmarks/machine.py reads the kernel and the CPU here too.
"""
import json
import os
import platform
import re
import subprocess
import sys

import numba
import numpy as np

from .. import threads

# The environment variables that choose OpenBLAS's kernel (its blocking, for the L2 size)
# instead of OpenBLAS's own detection of the CPU.
PIN_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}
# The SIMD flags of /proc/cpuinfo that decide which kernels a BLAS (and numba) can use.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")
MAX_ENTRIES = 1000       # stretches of a run's record kept (the first and the latest)

# What a resumed run compares, in the order a difference is named.
COMPARED = ("cpu", "blas", "blas_version", "blas_kernel", "blas_threads", "numba_jit", "numba",
            "numpy", "torch", "device", "torch_blas", "torch_isa", "torch_threads")
LABELS = {"cpu": "CPU", "blas": "BLAS", "blas_version": "BLAS version",
          "blas_kernel": "BLAS kernel", "blas_threads": "BLAS threads", "numba_jit": "numba",
          "numba": "numba version", "numpy": "numpy", "torch": "torch", "device": "device",
          "torch_blas": "torch's BLAS", "torch_isa": "torch's instruction set",
          "torch_threads": "torch threads"}


# ---------------------------------------------------------------------------- the machine

def cpu():
    """(model name, the SIMD flags of SIMD_FLAGS it has) from /proc/cpuinfo; elsewhere
    platform's processor or machine name, and no flags."""
    name, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "model name" and name is None:
                    name = value
                elif key == "flags" and flags is None:
                    flags = [fl for fl in value.split() if fl in SIMD_FLAGS]
                if name is not None and flags is not None:
                    break
    except OSError:
        pass
    if not name:
        name = platform.processor() or platform.machine() or "unknown"
    return name, flags or []


def pins():
    """'OPENBLAS_CORETYPE=Haswell …': the environment's choice of OpenBLAS's kernel, or None."""
    return " ".join(f"{v}={os.environ[v]}" for v in PIN_VARS if os.environ.get(v)) or None


_KERNEL = ("import json, numpy; from numpyvae.run.arithmetic import record; "
           "print(json.dumps(record()['blas_kernel']))")


def unpinned_kernel():
    """The OpenBLAS kernel a process without PIN_VARS gets on this CPU (what users get), read
    in a child process; None when it cannot be read. Seconds: for reports, not for a run."""
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARS}
    try:
        out = subprocess.run([sys.executable, "-c", _KERNEL], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        return json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


# ---------------------------------------------------------------------------- the record

def record():
    """numpyvae's arithmetic in this process, now: inside threads.limited(n), with n threads."""
    libs = threads.numpy_blas()
    lib = libs[0] if libs else None
    return {"numpy": np.__version__,
            "blas": lib.internal_api if lib else None,
            "blas_version": lib.version if lib else None,
            "blas_kernel": getattr(lib, "architecture", None),
            "blas_kernel_set_by": pins() if getattr(lib, "architecture", None) else None,
            "blas_threads": threads.pool_size(),
            "numba": numba.__version__,
            "numba_jit": not numba.config.DISABLE_JIT,
            "cpu": cpu()[0]}


def torch_record(torch, device):
    """The PyTorch reference's arithmetic: torch (the module, passed in: numpyvae never imports
    it) on `device`, its BLAS as it was built, the instruction set ATen runs, its threads."""
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    return {"torch": torch.__version__, "device": str(device),
            "torch_blas": blas[1] if blas else None,
            "torch_isa": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "cpu": cpu()[0]}


def describe(rec):
    """The one line a command prints as it starts: 'arithmetic: …'."""
    parts = []
    if "numpy" in rec:
        if rec["blas"]:
            name = f"{NAMES.get(rec['blas'], rec['blas'])} {rec['blas_version']}"
            kernel = rec["blas_kernel"] and (
                f" (kernel {rec['blas_kernel']}, "
                + (f"set by {rec['blas_kernel_set_by']})" if rec["blas_kernel_set_by"]
                   else f"{NAMES.get(rec['blas'], rec['blas'])}'s choice for this CPU)"))
        else:
            name, kernel = "a BLAS threadpoolctl cannot see", ""
        count = rec["blas_threads"]
        parts.append(f"numpy {rec['numpy']}, {name}{kernel or ''}, "
                     + (f"{count} thread{'s' * (count != 1)}" if count else "its own threads")
                     + f"; numba {rec['numba']}, "
                     + ("compiling" if rec["numba_jit"] else
                        "not compiling (NUMBA_DISABLE_JIT: its kernels run as Python)"))
    if "torch" in rec:
        parts.append(f"torch {rec['torch']} on {rec['device']} ({rec['torch_blas'] or '?'}, "
                     f"ATen {rec['torch_isa']}), {rec['torch_threads']} threads")
    parts.append(f"CPU {rec['cpu']}")
    return "arithmetic: " + "; ".join(parts)


def _words(key, value):
    if key == "numba_jit":
        return "compiling" if value else "not compiling"
    return "none" if value is None else str(value)


def differences(old, new):
    """['BLAS kernel Haswell → SkylakeX', …]: what `new` computes with that `old` did not."""
    return [f"{LABELS[k]} {_words(k, old.get(k))} → {_words(k, new.get(k))}"
            for k in COMPARED if (k in old or k in new) and old.get(k) != new.get(k)]


# ---------------------------------------------------------------------------- a run's record

def where(began):
    """A stretch's start, in words: [2, 0] is 'epoch 3', [2, 5] 'epoch 3, step 6'."""
    epoch, step = began
    return f"epoch {epoch + 1}" + (f", step {step + 1}" if step else "")


def resumed_line(entries, rec):
    """None when `rec` is the arithmetic a run recorded last (or it recorded none: numpyvae
    before the record), else the line a resumed run prints."""
    if not entries:
        return None
    last = entries[-1]
    diffs = differences(last, rec)
    if not diffs:
        return None
    return (f"the arithmetic is not the run's (recorded from {where(last['began'])}): "
            f"{', '.join(diffs)}; the run goes on, but no longer repeats an uninterrupted run "
            f"bit for bit")


def extend(entries, rec, epoch, step):
    """The run's record once it trains on from `epoch` epochs and `step` steps with `rec`:
    unchanged when `rec` is the arithmetic of its last entry, else with a new entry."""
    entries = list(entries or [])
    if entries and not differences(entries[-1], rec):
        return entries
    if len(entries) >= MAX_ENTRIES:
        entries = entries[:1] + entries[-(MAX_ENTRIES - 2):]
    return entries + [dict(rec, began=[epoch, step])]


def check(entries):
    """None when `entries` is a run's arithmetic record as numpyvae writes it, else what is
    wrong with it, in words (for the checkpoint reader: what it prints must be plain)."""
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
        return f"is not a list of 1 to {MAX_ENTRIES:,} entries"
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            return f"entry {i} is not an object"
        began = e.get("began")
        if not (isinstance(began, list) and len(began) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
                        for v in began)):
            return f"entry {i}'s began is {began!r}, not [epoch, step]"
        for key, value in e.items():
            if key == "began":
                continue
            if not (isinstance(key, str) and len(key) <= 64):
                return f"entry {i} has a key that is not a short name"
            if not (value is None or isinstance(value, (bool, int))
                    or (isinstance(value, str) and len(value) <= 200)):
                return f"entry {i}'s {key} is not a short text, a number or null"
    return None
