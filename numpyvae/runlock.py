"""One writer per run folder: an exclusive lock held for the whole life of a run.

    with RunLock(out):              # RunLocked at once if another process holds it
        ...                         # write checkpoint.npz, config.json, metrics.csv, pictures

The lock is flock(2) on `<folder>/.numpyvae.lock`, a file holding the holder's PID (for the
message a second writer gets). The kernel drops a flock when its process ends, however it ends
(kill -9 included), so a lock left by a dead process never blocks: the next run takes it. The
holder removes the file when it is done; a process that opened the file just before that and
then got the lock on the removed file sees that the path no longer names it, and tries again.
"""
import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".numpyvae.lock"


class RunLocked(Exception):
    """The folder is another process's run (or cannot be locked); the message says which."""


def _holder(fd):
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


class RunLock:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd = None

    def acquire(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(fd)
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunLocked(
                        f"{self.folder} is in use by another numpyvae process (PID {holder}, "
                        f"holding {self.path}); wait for it to finish or stop it, or choose "
                        "another --out") from None
                raise RunLocked(f"cannot lock {self.path} ({err.strerror}); this file system "
                                "does not support locks — choose an --out on a local disk") \
                    from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)                  # locked a file its holder had just removed: again
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)        # still ours: we hold the lock
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def lock_if_run_folder(folder):
    """The acquired lock of `folder` when it is a run folder (it holds checkpoint.npz or a lock
    file), for a command that writes a file there (sample --out, evaluate --json); else None."""
    folder = Path(folder)
    if (folder / "checkpoint.npz").exists() or os.path.lexists(folder / LOCK_NAME):
        return RunLock(folder).acquire()
    return None
