"""The IDX parser against files these tests write themselves.

Every oracle here is either "the array we wrote" (good files must parse to exactly it) or "the
defect we put in" (a bad file must raise IDXError naming the file and the defect). BAD_CASES is
also run under `python -O` in a subprocess, to prove the checks are not asserts.
"""
import gzip
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from numpyvae import idx
from numpyvae.datasets.idx import IDXError

ROOT = Path(__file__).resolve().parents[2]


def make_idx(array, type_code=0x08):
    """IDX bytes for a uint8 array: 00 00 type ndim, big-endian dims, then the data."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def sample_images(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def sample_labels(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


GOOD_IMAGES = make_idx(sample_images())
GOOD_LABELS = make_idx(sample_labels())
HUGE_IMAGES = bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**6, 10**3, 10**3)   # 10^12 bytes


def _corrupt_gzip():
    z = bytearray(gzip.compress(GOOD_IMAGES))
    z[len(z) // 2] ^= 0xFF                        # damage the deflate stream / CRC
    return bytes(z)


# name -> (bytes, which parser, a phrase the message must contain)
BAD_CASES = {
    "empty": (b"", "images", "holds only 0 bytes"),
    "bad_magic": (b"\x01\x02" + GOOD_IMAGES[2:], "images", "expected 00 00"),
    "wrong_type": (make_idx(sample_images(), type_code=0x0D), "images", "float32"),
    "wrong_ndim": (make_idx(sample_images().reshape(5, 784)), "images", "expected 3"),
    "labels_as_images": (GOOD_LABELS, "images", "expected 3"),
    "magic_only": (GOOD_IMAGES[:4], "images", "header is truncated"),
    "header_only": (GOOD_IMAGES[:16], "images", "bytes short"),
    "one_byte_short": (GOOD_IMAGES[:-1], "images", "1 byte short"),
    "trailing_bytes": (GOOD_IMAGES + b"\0\0\0", "images", "3 trailing bytes"),
    "huge_declared": (HUGE_IMAGES, "images", "the header is corrupt"),
    "huge_declared_gzip": (gzip.compress(HUGE_IMAGES + b"\0" * 100), "images",
                           "the header is corrupt"),
    "label_10": (make_idx(np.array([1, 2, 10, 3], np.uint8)), "labels", "label 10 at index 2"),
    "images_32x32": (make_idx(np.zeros((2, 32, 32), np.uint8)), "images", "expected 28 × 28"),
    "corrupt_gzip": (_corrupt_gzip(), "images", "not a valid gzip stream"),
    "truncated_gzip": (gzip.compress(GOOD_IMAGES)[:-10], "images", "not a valid gzip stream"),
    "gzip_one_byte_short": (gzip.compress(GOOD_IMAGES[:-1]), "images", "1 byte short"),
    "gzip_trailing": (gzip.compress(GOOD_IMAGES + b"\0"), "images", "1 trailing byte"),
}

PARSERS = {"images": idx.parse_images, "labels": idx.parse_labels}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_rejects_bad_bytes(case):
    """Oracle: the defect we put in. Each must raise IDXError naming the source and the defect."""
    data, kind, phrase = BAD_CASES[case]
    with pytest.raises(IDXError) as err:
        PARSERS[kind](data, source=f"made-up/{case}")
    assert f"made-up/{case}" in str(err.value)
    assert phrase in str(err.value), str(err.value)


def read_file(path, ndim=None):
    """An IDX file from disk as data.py reads one: its size checked before its bytes are read."""
    return idx.parse_idx(idx.read_idx_bytes(path, ndim), str(path), ndim)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_rejects_bad_files(tmp_path, case):
    """Oracle: the defect we put in, now as a file on disk (the size-before-read path)."""
    data, kind, phrase = BAD_CASES[case]
    path = tmp_path / case
    path.write_bytes(data)
    ndim = idx.IMAGES_NDIM if kind == "images" else idx.LABELS_NDIM
    with pytest.raises(IDXError) as err:
        arr = read_file(path, ndim)
        (idx.check_images if kind == "images" else idx.check_labels)(arr, str(path))
    assert str(path) in str(err.value)
    assert phrase in str(err.value), str(err.value)


def test_idx_error_is_a_value_error():
    """Oracle: the documented contract (IDXError subclasses ValueError)."""
    assert issubclass(IDXError, ValueError)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_good_files_parse_to_the_arrays_written(tmp_path, compress):
    """Oracle: the arrays we wrote — exact equality, from bytes and from a file."""
    images, labels = sample_images(7, seed=1), sample_labels(7, seed=1)
    blobs = {"images": make_idx(images), "labels": make_idx(labels)}
    if compress:
        blobs = {k: gzip.compress(v) for k, v in blobs.items()}
    for kind, expected in (("images", images), ("labels", labels)):
        got = PARSERS[kind](blobs[kind], source=kind)
        assert got.dtype == np.uint8 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        assert got.flags.writeable and got.flags.c_contiguous
        path = tmp_path / kind
        path.write_bytes(blobs[kind])
        np.testing.assert_array_equal(read_file(path), expected)
    idx.check_same_count(images, labels, "images", "labels")


def test_idx_bytes_of_gzip_equal_the_raw_bytes(tmp_path):
    """Oracle: the raw bytes we compressed — checksums are taken over these."""
    assert idx.idx_bytes(gzip.compress(GOOD_IMAGES)) == GOOD_IMAGES
    assert idx.idx_bytes(GOOD_IMAGES) == GOOD_IMAGES
    (tmp_path / "a.gz").write_bytes(gzip.compress(GOOD_LABELS))
    assert idx.read_idx_bytes(tmp_path / "a.gz") == GOOD_LABELS


def test_empty_dataset_is_well_formed():
    """Oracle: the IDX definition — zero images of 28 × 28 is a valid (if useless) file."""
    assert idx.parse_images(make_idx(np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


def test_count_mismatch_names_both_files():
    """Oracle: the defect we put in (5 images, 4 labels)."""
    with pytest.raises(IDXError, match=r"imgs holds 5 images but lbls holds 4 labels"):
        idx.check_same_count(sample_images(5), sample_labels(4), "imgs", "lbls")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_huge_declared_size_does_not_allocate(tmp_path, compress):
    """Oracle: a known bound — a header declaring 10^12 bytes raises within a second and
    without allocating more than a few MB (measured by tracemalloc, which sees numpy's heap)."""
    data = gzip.compress(HUGE_IMAGES + bytes(1000)) if compress else HUGE_IMAGES + bytes(1000)
    path = tmp_path / "huge"
    path.write_bytes(data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        for attempt in (lambda: idx.parse_images(data), lambda: read_file(path)):
            with pytest.raises(IDXError, match="header is corrupt|bytes short"):
                attempt()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 4 * 2**20, f"peak {peak:,} bytes allocated"


def test_checks_survive_python_O():
    """Oracle: the defects we put in, checked in a `python -O` subprocess (asserts stripped).

    The child script counts the cases that raise IDXError with `if`, not `assert`."""
    script = (
        "import sys\n"
        "if sys.flags.optimize < 1: sys.exit('python -O did not take effect')\n"
        "import test_idx as t\n"
        "from numpyvae.datasets.idx import IDXError\n"
        "missed = []\n"
        "for name, (data, kind, phrase) in t.BAD_CASES.items():\n"
        "    try:\n"
        "        t.PARSERS[kind](data, source=name)\n"
        "        missed.append(name)\n"
        "    except IDXError as err:\n"
        "        if phrase not in str(err): missed.append(name + ': ' + str(err))\n"
        "if missed: sys.exit('not rejected under -O: ' + repr(missed))\n"
        "print('rejected', len(t.BAD_CASES))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent)]))
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"rejected {len(BAD_CASES)}"


def test_gzip_body_shorter_than_declared_allocates_only_what_is_there():
    """Oracle: tracemalloc. A gzip stream declaring 47 MB of pixels but holding 4 MB of
    (incompressible) bytes is refused having held about those 4 MB, not the declared 47 MB."""
    header = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 60000, 28, 28)
    data = gzip.compress(header + np.random.default_rng(0).bytes(4 * 2**20), compresslevel=1)
    tracemalloc.start()
    try:
        with pytest.raises(idx.IDXError, match="declares"):
            idx.idx_bytes(data, "short.gz", 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"
