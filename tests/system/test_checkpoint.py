"""Checkpoints: round trip, every kind of bad file refused clearly, atomic writes.

Oracles: the arrays we wrote (round trip); the reference Torch Model's load_state_dict with
strict=True; the file system after an injected failure (the previous file byte-identical, no
temp file left).
"""
import io
import json
import os
import re
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch

import numpyvae as nv
from numpyvae import checkpoint as ck
from numpyvae import runfolder
from numpyvae.run.config import FORMAT_1_DEFAULTS
from reference.model import build


def full_config(dims=(784, 8, 3), dtype="float32"):
    """Every setting a run records (numpyvae.run.config.SETTINGS), as train.py writes them."""
    return dict(dataset="mnist", epochs=20, batch_size=128, hidden_dim=dims[1],
                latent_dim=dims[2], lr=1e-3, seed=1, binarize="threshold", samples=1,
                dtype=dtype, backend="numba", limit=0, x_dim=dims[0], data_dir=None,
                activation="leaky_relu", init="torch", output_bias="init", adam_eps=1e-8,
                lr_schedule="constant", holdout=0, preset=None, blas_threads=2, objective="elbo",
                estimator=None)


def make(dims=(784, 8, 3), dtype="float32", epoch=2):
    model = nv.VAE(*dims, dtype=dtype, seed=1)
    rng = np.random.default_rng(7)
    rng.standard_normal(5)
    hist = {c: [float(i + 1) for i in range(epoch)] for c in ck.HISTORY_COLUMNS}
    config = full_config(dims, dtype)
    return ck.Checkpoint(params={k: v.copy() for k, v in model.params.items()}, config=config,
                         adam_m=np.full(model.num_params, 0.5, model.dtype),
                         adam_v=np.full(model.num_params, 0.25, model.dtype), adam_t=17,
                         rng_state=rng.bit_generator.state, epoch=epoch, step_in_epoch=3,
                         order=np.arange(10)[::-1].copy(), running_loss=123.5,
                         epoch_elapsed=1.25, history=hist)


def test_round_trip(tmp_path):
    a = make()
    ck.save(tmp_path / "c.npz", a)
    b = ck.load(tmp_path / "c.npz")
    assert all(np.array_equal(a.params[k], b.params[k]) and a.params[k].dtype == b.params[k].dtype
               for k in a.params)
    assert np.array_equal(a.adam_m, b.adam_m) and np.array_equal(a.adam_v, b.adam_v)
    assert (b.adam_t, b.epoch, b.step_in_epoch, b.running_loss, b.epoch_elapsed) == (17, 2, 3, 123.5, 1.25)
    assert np.array_equal(b.order, a.order) and b.history == a.history and b.config == a.config
    g1, g2 = np.random.default_rng(), np.random.default_rng()
    g1.bit_generator.state, g2.bit_generator.state = a.rng_state, b.rng_state
    assert np.array_equal(g1.standard_normal(100), g2.standard_normal(100))


def test_run_folder_is_accepted(tmp_path):
    ck.save(tmp_path / "checkpoint.npz", make())
    assert ck.load(tmp_path).epoch == 2


def test_torch_reference_loads_the_params_strictly(tmp_path):
    a = make(dims=(784, 200, 20))
    ck.save(tmp_path / "c.npz", a)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        sd = {k: torch.from_numpy(z[k]) for k in z.files if k.startswith(("Encoder.", "Decoder."))}
    model = build(784, 200, 20)
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.Decoder.FC_output.bias, torch.from_numpy(a.params["Decoder.FC_output.bias"]))


def config_bytes(**changes):
    """The JSON of full_config() with `changes` (a value of ... removes the key)."""
    c = full_config()
    c.update(changes)
    c = {k: v for k, v in c.items() if v is not ...}
    return np.frombuffer(json.dumps(c).encode(), np.uint8)


def rewrite(path, mutate):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "checkpoint.npz"
    ck.save(path, make())
    return path


def expect_error(path, match):
    with pytest.raises(ck.CheckpointError, match=match) as e:
        ck.load(path)
    assert str(path) in str(e.value)


def test_truncated(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    expect_error(saved, "not a readable numpyvae checkpoint")


def test_flipped_byte(saved):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("Decoder.FC_dec2.weight.npy")
    data[info.header_offset + 200] ^= 0xFF          # inside the array's bytes: CRC catches it
    saved.write_bytes(bytes(data))
    expect_error(saved, "not a readable numpyvae checkpoint")


def test_not_a_zip(saved):
    saved.write_text("hello")
    expect_error(saved, "not a readable")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.npz", "no such checkpoint")


def test_object_array_is_refused_without_running_code(saved, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with np.load(saved, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["Encoder.FC_enc1.bias"] = np.array([Evil()], dtype=object)
    with open(saved, "wb") as f:
        np.savez(f, **arrays)
    expect_error(saved, "holds object values, not plain numbers")
    assert not marker.exists()


def test_other_architecture(saved):
    def bigger(a):
        a["Encoder.FC_enc1.weight"] = np.zeros((9, 784), np.float32)
    rewrite(saved, bigger)
    expect_error(saved, r"Encoder.FC_enc1.weight.*shape \(9, 784\), expected \(8, 784\)")


def test_extra_layer(saved):
    rewrite(saved, lambda a: a.__setitem__("Encoder.FC_extra.weight", np.zeros((2, 2), np.float32)))
    expect_error(saved, "unexpected parameters")


def test_non_finite(saved):
    def nan(a):
        a["Decoder.FC_output.bias"] = a["Decoder.FC_output.bias"].copy()
        a["Decoder.FC_output.bias"][0] = np.nan
    rewrite(saved, nan)
    expect_error(saved, "non-finite")


def test_wrong_dtype(saved):
    rewrite(saved, lambda a: a.__setitem__("Decoder.FC_dec1.bias", a["Decoder.FC_dec1.bias"].astype(np.float64)))
    expect_error(saved, "float64")


def test_missing_entry_and_version(saved):
    rewrite(saved, lambda a: a.pop("adam.v"))
    expect_error(saved, "missing entry 'adam.v'")
    ck.save(saved, make())
    rewrite(saved, lambda a: a.__setitem__("format_version", np.array(99)))
    expect_error(saved, "format version 99")


def test_atomic_write_keeps_the_previous_file_on_failure(saved, monkeypatch):
    before = saved.read_bytes()
    real = np.savez

    def half_then_crash(f, **arrays):
        real(f, **arrays)
        f.truncate(f.tell() // 2)
        raise OSError("disk full (injected)")

    monkeypatch.setattr(np, "savez", half_then_crash)
    with pytest.raises(OSError, match="injected"):
        ck.save(saved, make(epoch=5))
    assert saved.read_bytes() == before
    assert sorted(os.listdir(saved.parent)) == ["checkpoint.npz"]
    monkeypatch.setattr(np, "savez", real)

    def no_rename(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        ck.save(saved, make(epoch=5))
    assert saved.read_bytes() == before
    assert sorted(os.listdir(saved.parent)) == ["checkpoint.npz"]
    monkeypatch.undo()
    assert ck.load(saved).epoch == 2


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.__setitem__("adam.t", np.array(-1)), "step count is -1"),
    (lambda a: a.__setitem__("rng.state", np.array([1, 2, 3, 4, 7, 0], np.uint64)), "PCG64"),
    (lambda a: a.__setitem__("rng.state", np.array([1, 2, 3, 4, 0, 0], np.uint64)), "PCG64"),
    (lambda a: a.__setitem__("running_loss", np.array(np.nan)), "mid-epoch loss"),
    (lambda a: a.__setitem__("adam.m", a["adam.m"].astype(np.float64)), "Adam's moments are float64"),
    (lambda a: a.__setitem__("config_json", config_bytes(dataset=None)), "dataset is None"),
])
def test_inconsistent_state_is_refused(saved, mutate, match):
    rewrite(saved, mutate)
    expect_error(saved, match)


# ---------------------------------------------------------------------------- hostile files
# Oracle for "bounded": tracemalloc's peak while loading (numpy reports its array buffers to
# tracemalloc), against the size of the file itself. A reader that believed the headers would
# allocate terabytes (MemoryError) or gigabytes.

def npy_member(header_shape, dtype="<f8", body=b""):
    """A .npy whose header declares `header_shape` but whose data is only `body`."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": dtype, "fortran_order": False, "shape": header_shape})
    return f.getvalue() + body


def add_member(path, name, blob, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "a", compression=compress) as z:
        z.writestr(name, blob)


def replace_member(path, name, blob):
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = blob
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


def load_peak(path):
    tracemalloc.start()
    try:
        try:
            ck.load(path)
            error = None
        except ck.CheckpointError as e:
            error = e
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_npy_file_under_an_npz_name_is_refused(saved):
    np.save(saved.with_suffix(".tmp.npy"), np.arange(10))
    os.replace(saved.with_suffix(".tmp.npy"), saved)
    expect_error(saved, "not a readable numpyvae checkpoint")


def test_an_entry_the_loader_does_not_need_is_never_read(saved):
    """An extra entry declaring 10¹² float64 (8 TB) in a few bytes: loading ignores it."""
    add_member(saved, "junk.npy", npy_member((10**12,)))
    error, peak = load_peak(saved)
    assert error is None and peak < 4 * saved.stat().st_size


@pytest.mark.parametrize("entry", ["history.test_kl", "order", "adam.m", "config_json"])
def test_a_header_declaring_an_enormous_shape_is_refused_before_reading(saved, entry):
    blob = npy_member((10**12,), "|u1" if entry == "config_json" else
                      "<i8" if entry == "order" else "<f4" if entry == "adam.m" else "<f8")
    replace_member(saved, entry + ".npy", blob)
    error, peak = load_peak(saved)
    assert error is not None and str(saved) in str(error) and entry in str(error)
    assert peak < 4 * saved.stat().st_size


def test_a_header_larger_than_its_data_is_refused(saved):
    """Shape and dtype as expected, but the bytes are not there: refused from the sizes."""
    replace_member(saved, "adam.v.npy", npy_member((ck.load(saved).adam_v.size,), "<f4",
                                                   b"\0" * 16))
    expect_error(saved, r"entry 'adam.v' declares .* but holds 16 bytes")


def test_a_compressed_entry_is_refused(saved):
    """np.savez writes entries stored; a deflated one could expand ~1000× in memory."""
    with zipfile.ZipFile(saved) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    with zipfile.ZipFile(saved, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)
    expect_error(saved, "compressed")


def test_history_rows_must_match_the_epochs(saved):
    rewrite(saved, lambda a: a.__setitem__("history.test_kl", np.zeros(3)))
    expect_error(saved, r"history.test_kl' has shape \(3,\), expected \(2,\)")


@pytest.mark.parametrize("column,values,says", [
    ("epoch", [1e300, -7.5], "its history's epochs are not 1 to 2 in order"),
    ("epoch", [1.0, np.inf], "its history's epochs are not 1 to 2 in order"),
    ("epoch", [2.0, 1.0], "its history's epochs are not 1 to 2 in order"),
    ("test_neg_elbo", [80.0, np.nan], "its history's test_neg_elbo is nan at epoch 2"),
    ("train_neg_elbo", [-np.inf, 80.0], "its history's train_neg_elbo is -inf at epoch 1"),
    ("epoch_seconds", [1.0, -2.0], "its history's epoch_seconds is -2.0 at epoch 2, not a finite "
                                   "number of seconds"),
    ("holdout_neg_elbo", [np.inf, np.nan], "its history's holdout_neg_elbo is inf at epoch 1")])
def test_every_history_value_is_checked_when_read(saved, column, values, says):
    """metrics.csv and the pictures are drawn from the history: an epoch of 1e300 once passed
    the reader and then stopped train --resume with a traceback (a 301-digit epoch), after it
    had rewritten config.json. (NaN is what a held-out −ELBO is without --holdout.)"""
    rewrite(saved, lambda a: a.__setitem__("history." + column, np.array(values)))
    expect_error(saved, re.escape(says))


@pytest.mark.parametrize("key,value", [
    ("hidden_dim", 8.0), ("hidden_dim", "8"), ("latent_dim", True), ("epochs", 0),
    ("batch_size", "128"), ("lr", "0.001"), ("lr", -1.0), ("samples", 1.5), ("seed", None),
    ("dtype", "float16"), ("backend", "jax"), ("limit", -1), ("data_dir", 3),
    ("activation", "relu"), ("init", "xavier"), ("output_bias", 0), ("adam_eps", 0),
    ("lr_schedule", "cosine"), ("holdout", "10"), ("dataset", ["mnist"]), ("preset", 2015),
])
def test_configuration_values_of_the_wrong_type_are_refused(saved, key, value):
    rewrite(saved, lambda a: a.__setitem__("config_json", config_bytes(**{key: value})))
    expect_error(saved, re.escape(f"configuration's {key} is {value!r}, expected"))


def test_a_configuration_that_is_not_an_object_is_refused(saved):
    rewrite(saved, lambda a: a.__setitem__("config_json", np.frombuffer(b"[1, 2]", np.uint8)))
    expect_error(saved, "configuration is a JSON list")


def test_missing_settings_are_never_filled_in_silently(saved):
    rewrite(saved, lambda a: a.__setitem__("config_json", config_bytes(lr=..., samples=...)))
    expect_error(saved, "configuration lacks lr, samples")


def test_format_1_reads_the_later_settings_as_the_notebooks(saved):
    """Known values: a format-1 checkpoint (written before these settings existed) was trained
    with LeakyReLU, Torch's init, the initial output bias, Adam's ε 1e-8, a constant lr and
    nothing held out, the environment's BLAS threads; without its base settings it is still
    refused."""
    later = {k: ... for k in FORMAT_1_DEFAULTS}
    rewrite(saved, lambda a: a.update(format_version=np.array(1),
                                      config_json=config_bytes(**later)))
    c = ck.load(saved)
    assert {k: c.config[k] for k in FORMAT_1_DEFAULTS} == dict(
        activation="leaky_relu", init="torch", output_bias="init", adam_eps=1e-8,
        lr_schedule="constant", holdout=0, preset=None, blas_threads=None, objective="elbo",
        estimator=None)
    rewrite(saved, lambda a: a.update(config_json=config_bytes(batch_size=..., **later)))
    expect_error(saved, "configuration lacks batch_size")
    rewrite(saved, lambda a: a.update(format_version=np.array(2), config_json=config_bytes(**later)))
    expect_error(saved, "configuration lacks activation, init, output_bias")


def test_format_2_reads_the_thread_count_as_the_environments(saved):
    """Known value: a format-2 checkpoint (before --blas-threads) trained with the BLAS threads
    the environment gave, which a resumed run keeps (None); format 3 must record the count."""
    rewrite(saved, lambda a: a.update(format_version=np.array(2),
                                      config_json=config_bytes(blas_threads=...)))
    assert ck.load(saved).config["blas_threads"] is None
    rewrite(saved, lambda a: a.update(format_version=np.array(3)))
    expect_error(saved, "configuration lacks blas_threads")


def test_a_model_that_does_not_fit_the_dataset_is_refused(tmp_path):
    """Sizes that agree with each other (a 30-pixel VAE) but not with 28 × 28 images."""
    c = make()
    model = nv.VAE(30, 8, 3, seed=1)
    c.params = dict(model.params)
    c.adam_m = c.adam_v = np.zeros(model.num_params, np.float32)
    c.config = dict(c.config, x_dim=30)
    ck.save(tmp_path / "c.npz", c)
    expect_error(tmp_path / "c.npz", "takes 30 pixels per image, but mnist images have 784")


def test_num_params_must_agree(saved):
    rewrite(saved, lambda a: a.__setitem__("config_json", config_bytes(num_params=5)))
    expect_error(saved, "says 5 parameters")


def test_stale_temp_files_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    """Temp files of killed writers (today's .<name>.<pid>.<random>.tmp, the random part
    mkstemp's eight characters, and the older .<name>.<pid>.tmp) of the run's own names go, and links planted under such a name (the
    link itself; its target stays); those of a live process (this one), other names and other
    files stay. (PIDs above Linux's largest, 2**22, belong to no process.)"""
    (tmp_path / "target").write_bytes(b"keep")
    (tmp_path / ".metrics.csv.99999913.k2x9q0ab.tmp").symlink_to(tmp_path / "target")
    for name in (".checkpoint.npz.99999999.tmp", ".metrics.csv.99999912.tmp", f".elbo.png.{os.getpid()}.tmp",
                 ".notes.txt.12.tmp", "checkpoint.npz", "mine.tmp", ".checkpoint.npz.tmp",
                 ".checkpoint.npz.99999977.a1b2c3d4.tmp", ".checkpoint.npz.99999978.12345678.tmp",
                 ".checkpoint.npz.99999979.MINE.tmp", ".metrics.csv.99999979.a1b2c3d4e.tmp"):
        (tmp_path / name).write_bytes(b"x")
    removed = runfolder.remove_stale_temp_files(tmp_path, ("checkpoint.npz", "metrics.csv",
                                                           "elbo.png"))
    assert sorted(p.name for p in removed) == [
        ".checkpoint.npz.99999977.a1b2c3d4.tmp", ".checkpoint.npz.99999978.12345678.tmp",
        ".checkpoint.npz.99999999.tmp", ".metrics.csv.99999912.tmp", ".metrics.csv.99999913.k2x9q0ab.tmp"]
    assert (tmp_path / "target").read_bytes() == b"keep"
    (tmp_path / f".metrics.csv.{os.getppid()}.alive123.tmp").write_bytes(b"x")   # its parent's
    assert runfolder.remove_stale_temp_files(tmp_path, ("metrics.csv",)) == []
    (tmp_path / f".metrics.csv.{os.getppid()}.alive123.tmp").unlink()
    assert sorted(os.listdir(tmp_path)) == [".checkpoint.npz.99999979.MINE.tmp",
                                            ".checkpoint.npz.tmp", f".elbo.png.{os.getpid()}.tmp",
                                            ".metrics.csv.99999979.a1b2c3d4e.tmp",
                                            ".notes.txt.12.tmp", "checkpoint.npz", "mine.tmp",
                                            "target"]
