"""Checkpoints: one .npz of plain numeric arrays, written atomically, validated when read.

Contents (every entry a plain numeric array; read with allow_pickle=False, so loading can
never run code):

    Encoder.FC_enc1.weight … Decoder.FC_output.bias   the 14 parameters under the notebook's
                                                      state_dict names, Torch layout — so
                                                      {k: z[k] for those keys} loads into the
                                                      reference Model with strict=True
    format_version                                    int64 scalar, FORMAT_VERSION
    config_json                                       uint8: the run's configuration, UTF-8 JSON
    adam.m, adam.v (P,), adam.t ()                    Adam's moments and step count
    rng.state (6,) uint64                             the training Generator (PCG64) state
    epoch ()                                          epochs completed
    step_in_epoch (), order (N,) or (0,),             where a run interrupted mid-epoch stands:
    running_loss (), epoch_elapsed ()                 steps done, that epoch's shuffle, loss sum
                                                      so far, training seconds so far
    history.<column> (epoch,)                         one value per completed epoch (metrics.csv;
                                                      holdout_neg_elbo is NaN without --holdout)

Writing: temp file in the same folder, flush, fsync, os.replace, fsync the folder — a crash
mid-write leaves the previous checkpoint as it was.
"""
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import param_shapes

FORMAT_VERSION = 1
HISTORY_COLUMNS = ("epoch", "train_neg_elbo", "test_neg_elbo", "test_recon", "test_kl",
                   "epoch_seconds", "holdout_neg_elbo")
# Columns added after format 1 was first written; a checkpoint without one reads it as NaN
# (the run had no such measurement), so older checkpoints still load and resume.
LATER_COLUMNS = ("holdout_neg_elbo",)
_MASK64 = (1 << 64) - 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


@dataclass
class Checkpoint:
    params: dict                 # {state_dict name: array}
    config: dict
    adam_m: np.ndarray           # (P,)
    adam_v: np.ndarray           # (P,)
    adam_t: int
    rng_state: dict              # numpy PCG64 bit_generator.state
    epoch: int                   # epochs completed
    step_in_epoch: int = 0
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    running_loss: float = 0.0
    epoch_elapsed: float = 0.0
    history: dict = field(default_factory=lambda: {c: [] for c in HISTORY_COLUMNS})


def _pack_rng(state):
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"only PCG64 generators are checkpointed, got {state.get('bit_generator')}")
    s, inc = state["state"]["state"], state["state"]["inc"]
    return np.array([s >> 64, s & _MASK64, inc >> 64, inc & _MASK64,
                     state["has_uint32"], state["uinteger"]], dtype=np.uint64)


def _unpack_rng(a):
    a = [int(v) for v in a]
    return {"bit_generator": "PCG64",
            "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
            "has_uint32": a[4], "uinteger": a[5]}


def atomic_write(path, write):
    """Call write(file) on a temp file beside `path`, then fsync and rename it into place.

    If anything fails (or the process is interrupted), the temp file is removed and an
    existing `path` is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path, ckpt):
    """Write `ckpt` to `path` atomically."""
    arrays = {name: np.ascontiguousarray(v) for name, v in ckpt.params.items()}
    arrays.update({
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "config_json": np.frombuffer(json.dumps(ckpt.config, sort_keys=True).encode(), np.uint8),
        "adam.m": ckpt.adam_m, "adam.v": ckpt.adam_v, "adam.t": np.array(ckpt.adam_t, np.int64),
        "rng.state": _pack_rng(ckpt.rng_state),
        "epoch": np.array(ckpt.epoch, np.int64),
        "step_in_epoch": np.array(ckpt.step_in_epoch, np.int64),
        "order": np.asarray(ckpt.order, np.int64),
        "running_loss": np.array(ckpt.running_loss, np.float64),
        "epoch_elapsed": np.array(ckpt.epoch_elapsed, np.float64),
    })
    for col in HISTORY_COLUMNS:
        arrays["history." + col] = np.asarray(ckpt.history[col], np.float64)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _fail(path, what):
    raise CheckpointError(f"{path}: {what}")


def load(path):
    """Read and validate a checkpoint; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        _fail(path, "no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            KeyError, RuntimeError, NotImplementedError) as e:
        _fail(path, f"not a readable numpyvae checkpoint ({type(e).__name__}: {e}); "
                    "it may be truncated or corrupted — use an earlier copy or retrain")

    def need(key, kind=None, shape=None):
        if key not in data:
            _fail(path, f"missing entry '{key}' (not a numpyvae checkpoint, or another version)")
        a = data[key]
        if kind and a.dtype.kind not in kind:
            _fail(path, f"entry '{key}' has dtype {a.dtype}, expected {kind!r} kind")
        if shape is not None and a.shape != shape:
            _fail(path, f"entry '{key}' has shape {a.shape}, expected {shape}")
        return a

    version = int(need("format_version", "iu", ()))
    if version != FORMAT_VERSION:
        _fail(path, f"format version {version}; this numpyvae reads version {FORMAT_VERSION}")
    try:
        config = json.loads(need("config_json", "u").tobytes().decode())
        dims = (int(config["x_dim"]), int(config["hidden_dim"]), int(config["latent_dim"]))
        dtype = np.dtype(config["dtype"])
    except (ValueError, KeyError, TypeError) as e:
        _fail(path, f"its configuration is unreadable ({e})")
    if dtype not in (np.float32, np.float64) or min(dims) < 1:
        _fail(path, f"its configuration is invalid (dims {dims}, dtype {dtype})")
    for key, ok in (("dataset", lambda v: v in ("mnist", "fashion-mnist")),
                    ("binarize", lambda v: v in ("threshold", "dynamic", "none")),
                    ("seed", lambda v: isinstance(v, int) and v >= 0)):
        if not ok(config.get(key)):
            _fail(path, f"its configuration's {key} is {config.get(key)!r}, not a valid value")
    shapes = param_shapes(*dims)
    names = [k for k in data if k.startswith(("Encoder.", "Decoder."))]
    unexpected = sorted(set(names) - set(shapes))
    if unexpected:
        _fail(path, f"unexpected parameters {unexpected} — another architecture than "
                    f"the VAE {dims[0]}-{dims[1]}-{dims[2]} its config describes")
    params = {}
    for name, shape in shapes.items():
        a = need(name, "f", shape)
        if a.dtype != dtype:
            _fail(path, f"parameter '{name}' is {a.dtype}, the run's dtype is {dtype}")
        if not np.isfinite(a).all():
            _fail(path, f"parameter '{name}' holds non-finite values")
        params[name] = a
    P = sum(int(np.prod(s)) for s in shapes.values())
    m, v = need("adam.m", "f", (P,)), need("adam.v", "f", (P,))
    if m.dtype != dtype or v.dtype != dtype:
        _fail(path, f"Adam's moments are {m.dtype}/{v.dtype}, the run's dtype is {dtype}")
    if not (np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all()):
        _fail(path, "Adam's moments hold non-finite or negative values")
    adam_t = int(need("adam.t", "iu", ()))
    if adam_t < 0:
        _fail(path, f"Adam's step count is {adam_t}")
    rng = need("rng.state", "u", (6,))
    if rng[4] > 1 or rng[3] % 2 == 0:
        _fail(path, "its random-generator state is not a valid PCG64 state")
    running, elapsed = float(need("running_loss", "f", ())), float(need("epoch_elapsed", "f", ()))
    if not (np.isfinite(running) and np.isfinite(elapsed) and elapsed >= 0):
        _fail(path, f"its mid-epoch loss sum {running} or time {elapsed} is not valid")
    epoch = int(need("epoch", "iu", ()))
    history = {c: (need("history." + c, "f").tolist()
                   if c not in LATER_COLUMNS or "history." + c in data else [float("nan")] * epoch)
               for c in HISTORY_COLUMNS}
    if any(len(h) != epoch for h in history.values()):
        _fail(path, f"history has {[len(h) for h in history.values()]} rows for {epoch} epochs")
    order = need("order", "iu")
    step = int(need("step_in_epoch", "iu", ()))
    if order.ndim != 1 or (step > 0) != (order.size > 0) or step < 0:
        _fail(path, f"inconsistent mid-epoch position (step {step}, order of {order.size})")
    return Checkpoint(params=params, config=config, adam_m=m, adam_v=v, adam_t=adam_t,
                      rng_state=_unpack_rng(rng), epoch=epoch, step_in_epoch=step,
                      order=order.astype(np.int64), running_loss=running,
                      epoch_elapsed=elapsed, history=history)
