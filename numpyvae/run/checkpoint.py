"""Checkpoints: one .npz of plain numeric arrays, written atomically, validated when read.

Contents (every entry a plain numeric array; read with allow_pickle=False, so loading can
never run code):

    Encoder.FC_enc1.weight … Decoder.FC_output.bias   the 14 parameters under the notebook's
                                                      state_dict names, Torch layout — so
                                                      {k: z[k] for those keys} loads into the
                                                      reference Model with strict=True
    format_version                                    int64 scalar, FORMAT_VERSION
    config_json                                       uint8: the run's configuration, UTF-8
                                                      JSON (config.json's): the settings,
                                                      num_params, the arithmetic it computed
                                                      with (run/arithmetic.py); trained_by for
                                                      reference.train's runs
    adam.m, adam.v (P,), adam.t ()                    Adam's moments and step count
    rng.state (6,) uint64                             the training Generator (PCG64) state
    epoch ()                                          epochs completed
    step_in_epoch (), order (N,) or (0,),             where a run interrupted mid-epoch stands:
    running_loss (), epoch_elapsed ()                 steps done, that epoch's shuffle, loss sum
                                                      so far, training seconds so far
    history.<column> (epoch,)                         one value per completed epoch (metrics.csv;
                                                      holdout_neg_elbo is NaN without --holdout)

Writing: numpyvae.atomic.atomic_write — a temp file in the same folder, flush, fsync,
os.replace, fsync the folder — so a crash mid-write leaves the previous checkpoint as it was; a
temp file left by a killed process is removed by the next run in that folder.

Reading opens the zip itself and reads only the entries listed above, each one's .npy header
(dtype, shape) checked before its data is read; every entry must be stored uncompressed, so a
file can never make the reader allocate more than its own size. The configuration is checked
key by key against numpyvae.run.config.SETTINGS: format 4 records every setting; an older format,
written before some settings existed, reads those as the values its runs had
(config.absent_before): format 1 the notebook's choices, format 2 the environment's thread count,
format 3 the ELBO as the objective.
"""
import json
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..backend import DEFAULT as DEFAULT_BACKEND
from ..datasets.fetch import IMAGE_PIXELS, MAX_TRAIN_IMAGES
from ..errors import CheckpointError
from ..model import VAE, param_shapes
from . import arithmetic
from . import config as settings

FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)    # 1–3: before the settings of config.absent_before(version)
HISTORY_COLUMNS = ("epoch", "train_neg_elbo", "test_neg_elbo", "test_recon", "test_kl",
                   "epoch_seconds", "holdout_neg_elbo")
# Columns added after format 1 was first written; a checkpoint without one reads it as NaN
# (the run had no such measurement), so older checkpoints still load and resume.
LATER_COLUMNS = ("holdout_neg_elbo",)
_MASK64 = (1 << 64) - 1



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


# ---------------------------------------------------------------------------- configuration

MAX_CONFIG_BYTES = 1 << 20


def check_config(path, config, version):
    """The run's settings, complete and each of the right type, or CheckpointError."""
    if not isinstance(config, dict):
        _fail(path, f"its configuration is a JSON {type(config).__name__}, not an object")
    config = dict(config)
    for key, value in settings.absent_before(version).items():
        config.setdefault(key, value)
    missing = [s.name for s in settings.SETTINGS if s.name not in config]
    if missing:
        _fail(path, f"its configuration lacks {', '.join(missing)} (a format-{version} "
                    "checkpoint records every setting; it was edited or not written by "
                    "numpyvae) — use an earlier copy or retrain")
    for key in settings.BY_NAME:
        expected = settings.check_value(key, config[key])
        if expected is not None:
            _fail(path, f"its configuration's {key} is {config[key]!r}, expected {expected}")
    if "arithmetic" in config:                   # what the run computed with (arithmetic.py)
        wrong = arithmetic.check(config["arithmetic"])
        if wrong:
            _fail(path, f"its configuration's arithmetic record {wrong}")
    by = config.get("trained_by", "")                         # reference.train's runs
    if not (isinstance(by, str) and len(by) <= 200):
        size = f" of {len(by):,} characters" if isinstance(by, str) else ""
        _fail(path, f"its configuration's trained_by is not a short text (a JSON "
                    f"{type(by).__name__}{size})")
    if (config["objective"] == "iwae") != (config["estimator"] is not None):
        _fail(path, f"its configuration's objective {config['objective']!r} goes with estimator "
                    f"{config['estimator']!r}; an iwae run names its estimator, an elbo run none")
    if config["x_dim"] != IMAGE_PIXELS:
        _fail(path, f"its model takes {config['x_dim']} pixels per image, but {config['dataset']} "
                    f"images have {IMAGE_PIXELS} (28 × 28); it was not trained on this dataset")
    return config


# ---------------------------------------------------------------------------- reading

class _Entries:
    """The arrays of an .npz read one at a time, each header checked before its data is read.

    Only entries asked for are read. numpyvae writes every entry uncompressed (np.savez), so
    an entry's bytes must lie in the file itself: a small file cannot make the reader allocate
    more than its own size, whatever its headers or zip directory declare.
    """

    def __init__(self, path, zf):
        self.path, self.zf = path, zf
        self.names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        self.size = path.stat().st_size

    def __contains__(self, key):
        return key in self.names

    def read(self, key, kind=None, shape=None, dtype=None, max_size=None):
        path = self.path
        if key not in self.names:
            _fail(path, f"missing entry '{key}' (not a numpyvae checkpoint, or another version)")
        info = self.zf.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size \
                or info.header_offset + info.compress_size > self.size:
            _fail(path, f"entry '{key}' is compressed or larger than the file; numpyvae writes "
                        "plain uncompressed entries — not a numpyvae checkpoint")
        with self.zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, got = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                got_shape, fortran, got = np.lib.format.read_array_header_2_0(f)
            else:
                _fail(path, f"entry '{key}' is in .npy format {version}, expected 1.0 or 2.0")
            if got.hasobject or got.kind not in "biuf":
                _fail(path, f"entry '{key}' holds {got} values, not plain numbers")
            if kind and got.kind not in kind:
                _fail(path, f"entry '{key}' has dtype {got}, expected {kind!r} kind")
            if dtype is not None and got != dtype:
                _fail(path, f"entry '{key}' is {got}, the run's dtype is {np.dtype(dtype)}")
            if shape is not None and got_shape != shape:
                _fail(path, f"entry '{key}' has shape {got_shape}, expected {shape}")
            count = math.prod(got_shape)
            if max_size is not None and count > max_size:
                _fail(path, f"entry '{key}' declares {count:,} values, at most {max_size:,} "
                            "are possible")
            nbytes = count * got.itemsize
            if info.file_size != f.tell() + nbytes:
                _fail(path, f"entry '{key}' declares {got_shape} {got} ({nbytes:,} bytes) but "
                            f"holds {info.file_size - f.tell():,} bytes of data")
            a = np.empty(got_shape, got, order="F" if fortran else "C")
            if f.readinto(memoryview(a.reshape(-1, order="A")).cast("B")) != nbytes \
                    or f.read(1):                # reading to the end checks the CRC
                _fail(path, f"entry '{key}' is truncated")
        return a


def load(path):
    """Read and validate a checkpoint; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        _fail(path, "no such checkpoint file" + (" (it is not a regular file)"
                                                 if path.exists() else ""))
    try:
        with zipfile.ZipFile(path) as zf:
            return _load(path, _Entries(path, zf))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            KeyError, RuntimeError, NotImplementedError, zlib.error, struct.error) as e:
        _fail(path, f"not a readable numpyvae checkpoint ({type(e).__name__}: {e}); "
                    "it may be truncated or corrupted — use an earlier copy or retrain")


def _load(path, entries):
    def need(key, kind=None, shape=None, dtype=None, max_size=None):
        return entries.read(key, kind, shape, dtype, max_size)

    version = int(need("format_version", "iu", ()))
    if version not in READABLE_VERSIONS:
        _fail(path, f"format version {version}; this numpyvae reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))}")
    raw = need("config_json", "u", None, np.uint8, MAX_CONFIG_BYTES)
    if raw.ndim != 1:
        _fail(path, f"entry 'config_json' has shape {raw.shape}, expected one row of bytes")
    try:
        config = json.loads(raw.tobytes().decode())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        _fail(path, f"its configuration is unreadable ({e})")
    config = check_config(path, config, version)
    dims = (config["x_dim"], config["hidden_dim"], config["latent_dim"])
    dtype = np.dtype(config["dtype"])
    shapes = param_shapes(*dims)
    unexpected = sorted(n for n in entries.names
                        if n.startswith(("Encoder.", "Decoder.")) and n not in shapes)
    if unexpected:
        _fail(path, f"unexpected parameters {unexpected} — another architecture than "
                    f"the VAE {dims[0]}-{dims[1]}-{dims[2]} its config describes")
    P = sum(math.prod(s) for s in shapes.values())
    if "num_params" in config and config["num_params"] != P:
        _fail(path, f"its configuration says {config['num_params']!r} parameters, the VAE "
                    f"{dims[0]}-{dims[1]}-{dims[2]} has {P}")
    params = {}
    for name, shape in shapes.items():
        a = need(name, "f", shape, dtype)
        if not np.isfinite(a).all():
            _fail(path, f"parameter '{name}' holds non-finite values")
        params[name] = a
    m, v = need("adam.m", "f", (P,)), need("adam.v", "f", (P,))
    if m.dtype != dtype or v.dtype != dtype:
        _fail(path, f"Adam's moments are {m.dtype}/{v.dtype}, the run's dtype is {dtype}")
    if not (np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all()):
        _fail(path, "Adam's moments hold non-finite or negative values")
    adam_t = int(need("adam.t", "iu", ()))
    if adam_t < 0:
        _fail(path, f"Adam's step count is {adam_t}")
    rng = need("rng.state", "u", (6,))
    if int(rng[4]) > 1 or int(rng[3]) % 2 == 0:
        _fail(path, "its random-generator state is not a valid PCG64 state")
    running, elapsed = float(need("running_loss", "f", ())), float(need("epoch_elapsed", "f", ()))
    if not (np.isfinite(running) and np.isfinite(elapsed) and elapsed >= 0):
        _fail(path, f"its mid-epoch loss sum {running} or time {elapsed} is not valid")
    epoch = int(need("epoch", "iu", ()))
    if epoch < 0:
        _fail(path, f"it has completed {epoch} epochs")
    history = {c: (need("history." + c, "f", (epoch,)).tolist()
                   if c not in LATER_COLUMNS or "history." + c in entries
                   else [float("nan")] * epoch)
               for c in HISTORY_COLUMNS}
    check_history(path, history, epoch)
    order = need("order", "iu", None, None, MAX_TRAIN_IMAGES)
    step = int(need("step_in_epoch", "iu", ()))
    if order.ndim != 1 or (step > 0) != (order.size > 0) or step < 0:
        _fail(path, f"inconsistent mid-epoch position (step {step}, order of {order.size})")
    return Checkpoint(params=params, config=config, adam_m=m, adam_v=v, adam_t=adam_t,
                      rng_state=_unpack_rng(rng), epoch=epoch, step_in_epoch=step,
                      order=order.astype(np.int64), running_loss=running,
                      epoch_elapsed=elapsed, history=history)


def check_history(path, history, epoch):
    """The metric history as numpyvae writes it, or CheckpointError: the epochs 1 … epoch in
    order, every measurement finite (seconds not negative; the held-out −ELBO NaN for a run
    without --holdout). metrics.csv and the pictures are drawn from it."""
    if history["epoch"] != [float(e) for e in range(1, epoch + 1)]:
        _fail(path, f"its history's epochs are not 1 to {epoch} in order")
    for column, values in history.items():
        a = np.asarray(values, np.float64)
        bad = ~np.isfinite(a) if column != "holdout_neg_elbo" else np.isinf(a)
        if column == "epoch_seconds":
            bad |= a < 0
        if bad.any():
            i = int(np.argmax(bad))
            _fail(path, f"its history's {column} is {float(a[i])!r} at epoch {i + 1}, not "
                        + ("a finite number of seconds" if column == "epoch_seconds"
                           else "a finite number") + " — use an earlier copy or retrain")


def load_model(path, backend=DEFAULT_BACKEND):
    """(model, config) from a run folder or checkpoint file; backend as for VAE (numba: the
    fused importance-weighted log-likelihood). The checkpoint is validated in full first
    (`load`: every setting present and typed, a model for 28 × 28 images)."""
    ck = load(path)
    c = ck.config
    model = VAE(c["x_dim"], c["hidden_dim"], c["latent_dim"], dtype=c["dtype"], backend=backend,
                activation=c["activation"])
    model.load_params(ck.params)
    return model, c
