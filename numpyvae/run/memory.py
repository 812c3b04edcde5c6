"""How much memory a request needs, and whether this machine has it — checked before anything
large is allocated, so a request that cannot fit is one line, not a swap storm or a kill.

Every estimate is an upper one, from the sizes alone; the parameter count comes from the
model's own shapes (model.param_shapes).
"""
import math
import os
from decimal import Decimal

import numpy as np

from ..errors import UsageError
from ..oracle.likelihood import ROWS
from ..oracle.network import param_shapes


def num_params(x_dim, hidden_dim, latent_dim):
    """The model's parameter count (407,224 at 784-200-20), in Python integers (no overflow)."""
    return sum(math.prod(s) for s in param_shapes(x_dim, hidden_dim, latent_dim).values())


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available():
    """Room left under a cgroup v2 memory limit (containers), or None without one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(limit) - int(f.read()))
    except (OSError, ValueError):
        return None


def available_memory():
    """Bytes this process can still allocate, as far as can be told; None when unknown.

    Linux: MemAvailable of /proc/meminfo (free memory plus what the kernel can reclaim),
    lowered to a cgroup v2 limit's room; elsewhere the free physical pages (os.sysconf).
    """
    found = _meminfo_available()
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    room = _cgroup_available()
    if room is not None:
        found = room if found is None else min(found, room)
    return found


def gigabytes(n):
    """n bytes in words, "1.23 GB", for any number of bytes: an integer too large for a float
    (above 1.8e308) is divided as a Decimal."""
    scale, unit = (10**9, "GB") if n >= 10**8 else (10**6, "MB")
    try:
        value = n / scale
    except OverflowError:
        value = Decimal(n) / scale
    return f"{value:.3g} {unit}"


def check_memory(need, what, advice):
    """UsageError when `need` bytes (an estimate) exceed the memory available now.

    what: the request ("--batch-size 100000"); advice: what to do instead. Unknown available
    memory passes (the estimate is then only a guess at nothing)."""
    have = available_memory()
    if have is not None and need > have:
        raise UsageError(f"{what} needs ≈ {gigabytes(need)} of memory, this machine has "
                         f"{gigabytes(have)} available; {advice}")


def training_bytes(n_train, n_test, x_dim, hidden_dim, latent_dim, batch_size, samples, dtype):
    """An upper estimate of a training run's memory in bytes.

    Parameters P: the flat buffer, its gradient, Adam's m and v, Adam's temporaries and the
    checkpoint's copies (≈ 8 P). A step's activations: the encoder's (B, H) ×4, (B, Z) ×6 and
    input (B, D) ×3; per noise sample the decoder's (B, H) ×6 and (B, D) ×4 (logits, θ, the
    loss gradient, a temporary); doubled for the backward pass's transients. The evaluation
    pass (1000 images). The images as uint8 and a (B, D) byte scratch.
    """
    D, H, Z, L = x_dim, hidden_dim, latent_dim, samples
    B = min(batch_size, n_train)
    item = np.dtype(dtype).itemsize
    P = num_params(D, H, Z)
    step = B * (4 * H + 6 * Z + 3 * D) + L * B * (6 * H + 4 * D + 3 * Z)
    evaluation = min(1000, n_test) * (4 * H + 6 * Z + 4 * D) * 8
    return item * (8 * P + 2 * step) + evaluation + (n_train + n_test + B) * D


def likelihood_bytes(n_images, batch, k, x_dim, hidden_dim, latent_dim, dtype, rows=ROWS):
    """An upper estimate of evaluate's memory: numpyvae.likelihood's NumPy path decodes
    max(rows, batch) samples at a time — (rows, H) ×4, (rows, D) ×4, (rows, Z) ×4, float64
    weights (the numba path holds its activations and logits a block a worker) — plus the
    encoder's (batch, ·) and the parameters; and the n_images binarized inputs with their
    (n, H) ×2 and (n, Z) ×2 of the −ELBO and active-unit passes, in `dtype`."""
    D, H, Z = x_dim, hidden_dim, latent_dim
    r = min(k, max(1, rows // batch)) * batch
    P = num_params(D, H, Z)
    inputs = n_images * (D + 2 * H + 2 * Z) * np.dtype(dtype).itemsize
    return 8 * (r * (4 * H + 4 * D + 4 * Z + 4) + batch * (4 * H + 4 * Z + 2 * D) + 2 * P) + inputs
