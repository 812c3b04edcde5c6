"""The machine a benchmark ran on, and the kernels its libraries really ran.

`info()` gathers it once (as the JSON's `machine`); `describe(info)` is the printed block and
`pin_warning(info)` the warning for a pinned OpenBLAS kernel, or None.

Why the kernel is on record: OpenBLAS picks its GEMM kernel for the CPU at load time, unless
OPENBLAS_CORETYPE names one. A machine that pins it (e.g. OPENBLAS_CORETYPE=Haswell, the AVX2
kernel, on an AVX-512 CPU whose own choice is SkylakeX) runs numpy's matrix products slower than
any user of that CPU does, and every numpyvae figure with them. So the OpenBLAS kernel is read
from threadpoolctl (its `architecture`), and when the environment pins it, the kernel this CPU
would pick unpinned is read from a child process started without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE — both by numpyvae/run/arithmetic.py, whose record every command prints.
"""
import functools
import os
import platform
import shlex
import sys
import tempfile

import numpy as np

from numpyvae import threads
from numpyvae.run.arithmetic import PIN_VARS, cpu, record, unpinned_kernel
from numpyvae.run.cli import one_line

UNPIN = "env " + " ".join(f"-u {v}" for v in PIN_VARS)


@functools.cache
def mkl_kernel(torch):
    """The code path Torch's MKL reports for this CPU (its MKL_VERBOSE banner, e.g. "Intel(R)
    AVX-512 ... enabled processors"), or None. MKL prints to the C stdout, so it is read from
    file descriptor 1; it prints the banner once per process, hence the cache."""
    if not torch.backends.mkl.is_available():
        return None
    sys.stdout.flush()
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                a = torch.ones(8, 8)
                a @ a
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        banner = f.read().decode(errors="replace")
    for line in banner.splitlines():                 # "... for Intel(R) 64 architecture X, Lnx"
        if "architecture" in line:
            return line.split("architecture", 1)[1].split(",")[0].strip()
    return None


def info():
    name, flags = cpu()
    arith = record()                    # numpyvae's arithmetic (numpyvae/run/arithmetic.py)
    m = dict(cpu=name, cpu_flags=flags, cores=os.cpu_count(),
             usable_cores=threads.usable_cores(),       # the affinity's (taskset), ≤ cores
             python=platform.python_version(),
             numpy=np.__version__, numba=arith["numba"], numba_jit=arith["numba_jit"])
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        m["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:                                   # older NumPy: no dict mode
        m["blas"] = "unknown"
    m["blas_kernel"], m["blas_threads"] = arith["blas_kernel"], arith["blas_threads"]
    m.update({v.lower(): os.environ.get(v) for v in PIN_VARS})
    m["openblas_num_threads"] = os.environ.get("OPENBLAS_NUM_THREADS")
    m["blas_kernel_unpinned"] = (unpinned_kernel() if m["blas_kernel"] and any(
        os.environ.get(v) for v in PIN_VARS) else m["blas_kernel"])
    try:
        import torch                                        # an optional peer: None without it
    except ImportError:
        m.update(torch=None)
    else:
        m.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                 torch_blas=torch.backends.mkl.is_available() and "MKL" or "non-MKL",
                 torch_blas_kernel=mkl_kernel(torch),
                 torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    try:
        import jax                                          # an optional peer: None without it
        import jaxlib                                       # with jax
    except ImportError:
        m.update(jax=None)
    else:
        m.update(jax=jax.__version__, jaxlib=jaxlib.__version__, jax_backend=jax.default_backend(),
                 xla_flags=os.environ.get("XLA_FLAGS"))
    return m


def describe(m):
    """The printed machine block: each library's BLAS and the kernel it runs."""
    usable = f", {m['usable_cores']} usable" if m["usable_cores"] != m["cores"] else ""
    lines = [f"machine: {m['cpu']}, {m['cores']} cores{usable} "
             f"({' '.join(m['cpu_flags']) or '-'}); "
             f"python {m['python']}, numba {m['numba']}",
             f"  numpy {m['numpy']}: {m['blas']}, kernel {m['blas_kernel'] or '? (pip install threadpoolctl)'},"
             f" {m['blas_threads']} threads"
             + "".join(f", {v}={m[v.lower()]}" for v in PIN_VARS if m[v.lower()])]
    if m.get("torch"):
        lines.append(f"  torch {m['torch']}: {m['torch_blas']} ({m['torch_blas_kernel'] or '?'}),"
                     f" ATen {m['torch_cpu_capability']}, {m['torch_threads']} threads")
    if m.get("jax"):
        lines.append(f"  jax {m['jax']} (jaxlib {m['jaxlib']}): XLA:{m['jax_backend'].upper()}, "
                     f"code generated for this CPU"
                     + (f", XLA_FLAGS={m['xla_flags']}" if m["xla_flags"] else ""))
    return "\n".join(lines)


def pin_warning(m, command="python -m ..."):
    """A warning when OPENBLAS_CORETYPE pins numpy's OpenBLAS to another kernel than this CPU's
    own choice (what its users get), else None. `command`: the one to repeat unpinned."""
    pinned, own = m.get("blas_kernel"), m.get("blas_kernel_unpinned")
    if not m.get("openblas_coretype") or not pinned or pinned == own:
        return None
    users = (f"unpinned, this CPU runs its {own} kernel, as its users' NumPy does" if own else
             "the kernel this CPU picks unpinned could not be read")
    return (f"WARNING: OPENBLAS_CORETYPE={m['openblas_coretype']} pins numpy's OpenBLAS to its "
            f"{pinned} kernel; {users}. numpyvae's figures here are not what users get: to "
            f"measure that, run `{UNPIN} {command}`.")


def report(module, argv=None):
    """Print the machine block, and the pin warning if any, for `python -m <module> <argv>`
    (argv None: this process's own); returns the block for the JSON's `machine`."""
    m = info()
    print(describe(m))
    args = sys.argv[1:] if argv is None else list(argv)
    m["pin_warning"] = pin_warning(m, one_line(shlex.join(["python", "-m", module] + args)))
    if m["pin_warning"]:
        print(m["pin_warning"])
    return m
