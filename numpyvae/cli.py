"""What the command-line entry points (train, evaluate, sample) share: flag types, the usage
error, the memory check made before anything large is allocated, evaluation helpers and
--json output.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from .backend import DEFAULT as DEFAULT_BACKEND


class UsageError(Exception):
    """A request that cannot be carried out as asked; the message says what to change."""


# ---------------------------------------------------------------------------- flag types

def flag_type(convert, accept, expected):
    """An argparse type: convert(text), refused unless accept(value), naming what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = flag_type(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = flag_type(int, lambda v: v >= 0, "an integer ≥ 0")
positive_float = flag_type(float, lambda v: np.isfinite(v) and v > 0, "a positive number")


# ---------------------------------------------------------------------------- memory

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
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


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
    P = D * H + H * H + 2 * H * Z + Z * H + H * H + H * D + 4 * H + 2 * Z + D   # 407,224
    step = B * (4 * H + 6 * Z + 3 * D) + L * B * (6 * H + 4 * D + 3 * Z)
    evaluation = min(1000, n_test) * (4 * H + 6 * Z + 4 * D) * 8
    return item * (8 * P + 2 * step) + evaluation + (n_train + n_test + B) * D


def likelihood_bytes(batch, k, x_dim, hidden_dim, latent_dim, dtype, rows=5000):
    """An upper estimate of evaluate's importance-weighted pass: numpyvae.likelihood decodes
    max(rows, batch) samples at a time — (rows, H) ×4, (rows, D) ×4, (rows, Z) ×4, float64
    weights — plus the encoder's (batch, ·) and the parameters."""
    D, H, Z = x_dim, hidden_dim, latent_dim
    r = min(k, max(1, rows // batch)) * batch
    P = 2 * D * H + 2 * H * H + 3 * H * Z
    return 8 * (r * (4 * H + 4 * D + 4 * Z + 4) + batch * (4 * H + 4 * Z + 2 * D) + 2 * P)


# ---------------------------------------------------------------------------- evaluation

# The random streams: each is np.random.default_rng([seed, purpose]) (or the same SeedSequence),
# so no part of a run shifts another's draws.
#   1     training: the epoch order, dynamic binarization and ε   train.train_generator
#   2, 3  the test set's ε and its one binarization draw          evaluate_test, eval_inputs
#   4     the pictures                                            plots.py
#   5     evaluate's importance samples (seed: evaluate --seed)   evaluate.py, reference/evaluate.py
#   6, 7  the held-out images' ε and binarization (--holdout)     evaluate_test, eval_inputs
# The model's initialisation draws from default_rng(seed) itself (model.VAE).
TEST_STREAMS, HOLDOUT_STREAMS, IMPORTANCE_STREAM = (2, 3), (6, 7), 5


def eval_generator(seed, purpose):
    """A separate, fixed stream for evaluation (`purpose`: the table above)."""
    return np.random.default_rng([seed, purpose])


def eval_inputs(images, seed, mode, dtype, stream=TEST_STREAMS[1]):
    """The images as the run's evaluation sees them, (N, D) of `dtype`: binarized by one draw
    of its fixed binarization stream — image i gets the same draw here as in evaluate_test's
    chunks (the stream is consumed image by image, in order)."""
    from . import data

    flat = images.reshape(len(images), -1)                                      # (N, D)
    return data.batch_into(flat, np.arange(len(flat)), mode, eval_generator(seed, stream),
                           np.empty(flat.shape, dtype))


def evaluate_test(model, images, seed, mode, batch=1000, streams=TEST_STREAMS):
    """Test −ELBO per image and its two parts, each a float (nats/image), with the run's fixed
    evaluation ε and binarization (the `streams` of `seed`; `mode` one of data.BINARIZE_MODES):
    a dynamically binarized image is one fixed draw, the same at every evaluation."""
    from . import data
    from .likelihood import neg_elbo_per_image

    rng_eps, rng_bin = eval_generator(seed, streams[0]), eval_generator(seed, streams[1])
    flat = images.reshape(len(images), -1)
    buf = np.empty((min(batch, len(flat)), flat.shape[1]), model.dtype)
    recon = kl = 0.0
    for start in range(0, len(flat), batch):
        idx = np.arange(start, min(start + batch, len(flat)))
        x = data.batch_into(flat, idx, mode, rng_bin, buf)
        eps = rng_eps.standard_normal((len(idx), model.latent_dim), dtype=model.dtype)
        r, d = neg_elbo_per_image(model, x, eps)              # (B,) reconstruction, (B,) KL
        recon += r.sum()
        kl += d.sum()
    n = len(flat)
    return (recon + kl) / n, recon / n, kl / n


def load_model(path, backend=DEFAULT_BACKEND):
    """(model, config) from a run folder or checkpoint file; backend as for VAE (numba: the
    fused importance-weighted log-likelihood). The checkpoint is validated in full first
    (numpyvae.checkpoint.load: every setting present and typed, a model for 28 × 28 images)."""
    from . import checkpoint
    from .model import VAE

    ck = checkpoint.load(path)
    c = ck.config
    model = VAE(c["x_dim"], c["hidden_dim"], c["latent_dim"], dtype=c["dtype"], backend=backend,
                activation=c["activation"])
    model.load_params(ck.params)
    return model, c


# ---------------------------------------------------------------------------- output files

def check_json_path(path):
    """Check a --json PATH before an evaluation, not minutes later when the file is written: its
    folder must exist, and a run folder must not be in use by a training (its lock is taken and
    given back at once; write_json takes it again to write)."""
    from .runlock import lock_if_run_folder

    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"--json {path}: the folder {folder} does not exist; create it or "
                         f"write elsewhere")
    lock = lock_if_run_folder(folder)
    if lock is not None:
        lock.release()


def write_json(path, result, wait=10.0):
    """`result` (a dict) as indented JSON at --json PATH, atomically, holding the lock of a run
    folder while it writes there. A folder held by another command is waited for up to `wait`
    seconds — long enough for another short writer (two evaluations of one run finishing
    together), while a training, which holds its folder for hours, is still refused."""
    from .checkpoint import atomic_write
    from .runlock import RunLocked, lock_if_run_folder

    deadline = time.monotonic() + wait
    while True:
        try:
            lock = lock_if_run_folder(Path(path).parent)
            break
        except RunLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        atomic_write(path, lambda f: f.write(json.dumps(result, indent=2).encode() + b"\n"))
    except OSError as e:
        raise UsageError(f"cannot write --json {path}: {e.strerror or e}") from None
    finally:
        if lock is not None:
            lock.release()
