"""Checkpoints: round trip, every kind of bad file refused clearly, atomic writes.

Oracles: the arrays we wrote (round trip); the reference Torch Model's load_state_dict with
strict=True; the file system after an injected failure (the previous file byte-identical, no
temp file left).
"""
import os
import zipfile

import numpy as np
import pytest
import torch

import numpyvae as nv
from numpyvae import checkpoint as ck
from reference.model import build


def make(dims=(30, 8, 3), dtype="float32", epoch=2):
    model = nv.VAE(*dims, dtype=dtype, seed=1)
    rng = np.random.default_rng(7)
    rng.standard_normal(5)
    hist = {c: [float(i + 1) for i in range(epoch)] for c in ck.HISTORY_COLUMNS}
    config = dict(x_dim=dims[0], hidden_dim=dims[1], latent_dim=dims[2], dtype=dtype, seed=1,
                  dataset="mnist", binarize="threshold")
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
    expect_error(saved, "not a readable")
    assert not marker.exists()


def test_other_architecture(saved):
    def bigger(a):
        a["Encoder.FC_enc1.weight"] = np.zeros((9, 30), np.float32)
    rewrite(saved, bigger)
    expect_error(saved, r"Encoder.FC_enc1.weight.*shape \(9, 30\), expected \(8, 30\)")


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
    (lambda a: a.__setitem__("config_json", np.frombuffer(
        b'{"x_dim": 30, "hidden_dim": 8, "latent_dim": 3, "dtype": "float32", "seed": 1, '
        b'"binarize": "threshold"}', np.uint8)), "dataset is None"),
])
def test_inconsistent_state_is_refused(saved, mutate, match):
    rewrite(saved, mutate)
    expect_error(saved, match)
