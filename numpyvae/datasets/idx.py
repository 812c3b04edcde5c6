"""The IDX file format of MNIST and Fashion-MNIST: bytes or a path in, checked arrays out.

An IDX file is a header followed by the elements in C order (LeCun et al., "THE MNIST DATABASE"):

    offset  bytes        meaning
    0       2            zero, zero
    2       1            element type; 0x08 = unsigned byte (the only one accepted here)
    3       1            number of dimensions d (3 for images, 1 for labels)
    4       4·d          each dimension as a big-endian uint32 (images: N, rows, columns)
    4+4·d   Π dims       the elements, one byte each

so images begin 00 00 08 03 (magic 0x00000803) and labels 00 00 08 01 (magic 0x00000801).
A file may also be gzip-compressed; that is recognised by its first two bytes, 1f 8b.

Every check happens before the array is allocated, so a damaged header cannot make us allocate
what it declares: for a file on disk the declared size is compared with the file's size; for
gzip data the declared size must fit what `len(data)` compressed bytes can expand to (deflate
expands at most 1032:1) and at most MAX_IDX_BYTES, and then exactly declared + 1 bytes are
requested, so a truncated or overlong stream shows. Truncated files and trailing bytes are
rejected; validation uses `raise`, never `assert`, so it survives `python -O`.

Errors are `IDXError` (numpyvae/errors.py), a subclass of ValueError (the bytes hold a bad
value). This module stays pure — no network, no printing, no knowledge of where files live —
so it raises no DataError; `numpyvae.data.load` catches IDXError for a file it read and raises
a DataError that adds what to do about it. Every message names the file (`source`), says what
was found and what was expected.
"""
import gzip
import io
import os
import struct
import zlib

import numpy as np

from ..errors import IDXError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08                    # the element type code of every MNIST-family file
IMAGES_NDIM, LABELS_NDIM = 3, 1
MAX_IDX_BYTES = 64 * 2**20      # above the largest MNIST-family file (47,040,016 bytes)
GZIP_CHUNK = 4 * 2**20          # gzip bodies are read this much at a time, so memory grows
                                # with the bytes really there, not with a header's claim
DEFLATE_MAX_RATIO = 1032        # deflate never expands more than this (zlib technical details)

TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
              0x0D: "float32", 0x0E: "float64"}



def _plural(n, word):
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _read_header(read, source, expected_ndim):
    """Parse magic and dimensions through `read(n) -> bytes`.

    Returns (header_len, dims, payload_len); raises IDXError on a bad or short header.
    """
    magic = read(4)
    if len(magic) < 4:
        raise IDXError(f"{source}: holds only {_plural(len(magic), 'byte')}; an IDX file starts "
                       f"with a 4-byte magic number (00 00 08 03 for images, 00 00 08 01 for "
                       f"labels). The file is empty or truncated.")
    if magic[0] != 0 or magic[1] != 0:
        raise IDXError(f"{source}: not an IDX file: it starts with bytes "
                       f"{magic[0]:02x} {magic[1]:02x}, expected 00 00 (an IDX file starts with "
                       f"two zero bytes, a type code and the number of dimensions).")
    if magic[2] != UBYTE:
        found = TYPE_NAMES.get(magic[2], "unknown")
        raise IDXError(f"{source}: element type code 0x{magic[2]:02x} ({found}), expected "
                       f"0x{UBYTE:02x} (unsigned byte), as in every MNIST-family file.")
    ndim = magic[3]
    if expected_ndim is not None and ndim != expected_ndim:
        kind = {IMAGES_NDIM: "images: count, rows, columns", LABELS_NDIM: "labels: count"}
        raise IDXError(f"{source}: {_plural(ndim, 'dimension')} (magic 0x{magic.hex()}), expected "
                       f"{expected_ndim} ({kind.get(expected_ndim, 'as asked')}; magic "
                       f"0x000008{expected_ndim:02x}).")
    if ndim == 0:
        raise IDXError(f"{source}: declares 0 dimensions, expected at least 1.")
    raw_dims = read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXError(f"{source}: the header is truncated: {ndim} dimensions need "
                       f"{4 * ndim} bytes after the magic number, found {len(raw_dims)}.")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    payload = 1
    for d in dims:                                  # Python ints: no overflow
        payload *= d
    return 4 + 4 * ndim, dims, payload


def _describe(dims, header_len, payload):
    shape = " × ".join(f"{d:,}" for d in dims)
    return (f"the header declares {shape} = {_plural(payload, 'data byte')} after a "
            f"{header_len}-byte header ({header_len + payload:,} in all)")


def _check_size(source, dims, header_len, payload, actual):
    """Compare the declared size with `actual` total bytes; raise on any difference."""
    total = header_len + payload
    if total > MAX_IDX_BYTES:
        raise IDXError(f"{source}: {_describe(dims, header_len, payload)}, more than the "
                       f"{MAX_IDX_BYTES:,} bytes this reader accepts; the header is corrupt.")
    if actual < total:
        raise IDXError(f"{source}: {_describe(dims, header_len, payload)}, but it holds "
                       f"{actual:,}: {_plural(total - actual, 'byte')} short. The file is "
                       f"truncated (an interrupted download?); fetch it again.")
    if actual > total:
        raise IDXError(f"{source}: {_describe(dims, header_len, payload)}, but it holds "
                       f"{actual:,}: {_plural(actual - total, 'trailing byte')} after the data. "
                       f"This is not a well-formed IDX file.")


def _gunzip(data, source, expected_ndim):
    """Decompress gzip `data` holding one IDX file, reading no more than its header allows."""
    limit = DEFLATE_MAX_RATIO * len(data)
    header = bytearray()

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            def read_and_keep(n):
                chunk = stream.read(n)
                header.extend(chunk)
                return chunk

            header_len, dims, payload = _read_header(read_and_keep, source, expected_ndim)
            total = header_len + payload
            if total > MAX_IDX_BYTES or total > limit:
                raise IDXError(f"{source}: {_describe(dims, header_len, payload)}, but "
                               f"{len(data):,} gzip bytes can expand to at most "
                               f"{min(limit, MAX_IDX_BYTES):,}; the header is corrupt.")
            body = bytearray()                      # payload + 1: shows trailing bytes, checks CRC
            while len(body) <= payload:
                chunk = stream.read(min(GZIP_CHUNK, payload + 1 - len(body)))
                if not chunk:
                    break
                body += chunk
            body = bytes(body)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise IDXError(f"{source}: not a valid gzip stream ({err}). The file is damaged or "
                       f"truncated; fetch it again.") from err
    _check_size(source, dims, header_len, payload, header_len + len(body))
    return bytes(header) + body


def idx_bytes(data, source="<bytes>", expected_ndim=None):
    """The uncompressed IDX bytes of `data` (raw or gzip), after the header and size checks.

    data: bytes-like. source: what to call it in errors (a path or URL).
    This is what a checksum of "the decompressed file" is taken over.
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if data[:2] == GZIP_MAGIC:
        return _gunzip(data, source, expected_ndim)
    stream = io.BytesIO(data)
    header_len, dims, payload = _read_header(stream.read, source, expected_ndim)
    _check_size(source, dims, header_len, payload, len(data))
    return data


def read_idx_bytes(path, expected_ndim=None):
    """The uncompressed IDX bytes of the file at `path` (raw or gzip), checked before reading.

    A raw file's declared size is compared with its size on disk before its data is read.
    """
    source = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        first = f.read(2)
        if first == GZIP_MAGIC:
            if size > MAX_IDX_BYTES:
                raise IDXError(f"{source}: a gzip file of {size:,} bytes, more than the "
                               f"{MAX_IDX_BYTES:,} this reader accepts.")
            data = first + f.read()
            return _gunzip(data, source, expected_ndim)
        head = io.BytesIO(first + f.read(2 + 4 * 255))   # the longest possible header
        header_len, dims, payload = _read_header(head.read, source, expected_ndim)
        _check_size(source, dims, header_len, payload, size)
        f.seek(0)
        data = f.read(header_len + payload + 1)
    if len(data) != size:                                 # the file changed while we read it
        _check_size(source, dims, header_len, payload, len(data))
    return data


def parse_idx(data, source="<bytes>", expected_ndim=None):
    """An unsigned-byte IDX file (raw or gzip bytes) as a writable uint8 array of its shape."""
    raw = idx_bytes(data, source, expected_ndim)
    header_len, dims, payload = _read_header(io.BytesIO(raw).read, source, expected_ndim)
    out = np.empty(dims, dtype=np.uint8)
    out.reshape(-1)[:] = np.frombuffer(raw, dtype=np.uint8, count=payload, offset=header_len)
    return out



def check_images(images, source, rows=28, cols=28):
    """Raise IDXError unless `images` is (N, rows, cols); returns it."""
    if images.ndim != 3 or images.shape[1:] != (rows, cols):
        shape = " × ".join(str(d) for d in images.shape[1:])
        raise IDXError(f"{source}: images are {shape} pixels, expected {rows} × {cols} "
                       f"(MNIST and Fashion-MNIST images are 28 × 28).")
    return images


def check_labels(labels, source, num_classes=10):
    """Raise IDXError unless every label is in 0 … num_classes−1; returns `labels`."""
    if labels.size and labels.max() >= num_classes:
        i = int(np.argmax(labels >= num_classes))
        raise IDXError(f"{source}: label {int(labels[i])} at index {i:,}, expected 0 … "
                       f"{num_classes - 1} (one label per class).")
    return labels


def check_same_count(images, labels, images_source, labels_source):
    """Raise IDXError unless there is one label per image."""
    if len(images) != len(labels):
        raise IDXError(f"{images_source} holds {_plural(len(images), 'image')} but "
                       f"{labels_source} holds {_plural(len(labels), 'label')}; expected one "
                       f"label per image (are the two files from the same split and dataset?).")


def parse_images(data, source="<bytes>", rows=28, cols=28):
    """Images IDX bytes (raw or gzip) -> uint8 (N, rows, cols), all checks applied."""
    return check_images(parse_idx(data, source, IMAGES_NDIM), source, rows, cols)


def parse_labels(data, source="<bytes>", num_classes=10):
    """Labels IDX bytes (raw or gzip) -> uint8 (N,), all checks applied."""
    return check_labels(parse_idx(data, source, LABELS_NDIM), source, num_classes)
