"""How every file of numpyvae is written: `atomic_write`, a temp file beside the target, fsync,
rename. A crash or a signal mid-write leaves the previous version whole and no temp file of
this process's; a temp file of a killed writer is removed by the next command that holds the
folder (numpyvae/run/folder.py, `remove_stale_temp_files`, which knows TEMP_NAME's pattern).
Imports nothing of numpyvae: the data cache, checkpoints, pictures and results all use it.
"""
import contextlib
import os
import re
import tempfile
from pathlib import Path

def _fsync_folder(folder):
    with contextlib.suppress(OSError):                   # not possible on every platform
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path, write, replace=True):
    """Call write(file) on a new temp file beside `path`, fsync it, and put it in place.

    The temp file, .<name>.<pid>.<random>.tmp, is created exclusively (never through a link
    planted under its name) with mode 0644. replace=True: it replaces whatever `path` held
    (os.replace). replace=False: it is put only where nothing is — os.link, which fails rather
    than replace (os.replace after a check, on a file system without hard links) — and False
    is returned, nothing written, if `path` exists. Whatever happens, KeyboardInterrupt
    included, no temp file is left and an existing `path` is whole, old or new. Returns True
    once written.
    """
    path = Path(path)
    if not replace and os.path.lexists(path):           # anything, a broken link included
        return False
    try:
        return _atomic_write(path, write, replace)
    except OSError as e:      # named after the file being written: not its temp file, nor
        name = e.filename     # nothing (a full disk's write or fsync names no file)
        if e.errno is not None and (name is None or (
                isinstance(name, (str, bytes, os.PathLike)) and os.path.basename(
                    os.fsdecode(name)).startswith(f".{path.name}.{os.getpid()}."))):
            e.filename, e.filename2 = os.fspath(path), None
        raise


def _atomic_write(path, write, replace):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:                              # a file system without hard links
                if os.path.lexists(path):
                    return False
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_folder(path.parent)
    return True



# What atomic_write names its temp files: .<name>.<pid>.<random>.tmp, the random part
# tempfile.mkstemp's eight characters of a-z, 0-9 and _ — and .<name>.<pid>.tmp, as numpyvae
# wrote them before it drew the random part.
TEMP_NAME = re.compile(r"\.(?P<name>.+?)\.(?P<pid>\d+)(?:\.[a-z0-9_]{8})?\.tmp")
