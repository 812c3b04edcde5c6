"""One writer per run folder: an exclusive lock held for the whole life of a run.

    with RunLock(out):              # RunLocked at once if another process holds it
        ...                         # write checkpoint.npz, config.json, metrics.csv, pictures

The lock is flock(2) on `<folder>/.numpyvae.lock`, a file holding the holder's PID and what it
is doing (for the message a second writer gets, and for a reader: `holder`). The kernel drops a
flock when its process ends, however it ends (kill -9 included), so a lock left by a dead
process never blocks: the next run takes it. The
holder removes the file when it is done; a process that opened the file just before that and
then got the lock on the removed file sees that the path no longer names it, and tries again.
"""
import contextlib
import errno
import fcntl
import os
from pathlib import Path

from ..errors import RunLocked

LOCK_NAME = ".numpyvae.lock"
TRAINING = "training"             # what train and reference.train write as their purpose



def _holder(fd):
    """(PID, purpose) as the lock file says: "unknown" and "" where it says nothing usable."""
    try:
        text = os.pread(fd, 128, 0).decode("ascii", "replace").split("\n")
    except OSError:
        return "unknown", ""
    pid = text[0].strip()
    return (pid if pid.isdigit() else "unknown"), (text[1].strip() if len(text) > 1 else "")


class RunLock:
    """Construct, then acquire() — and release() in a `finally`, even when acquire() did not
    return: a signal's KeyboardInterrupt can land anywhere inside it, and release() then
    undoes exactly what had been done (the file it created, a lock it had taken)."""

    def __init__(self, folder, flag="--out", purpose=""):
        self.folder = Path(folder)
        self.flag = flag                  # the flag that put the output here, for messages
        self.purpose = purpose            # what the holder does (TRAINING), for readers
        self.path = self.folder / LOCK_NAME
        self.fd = None                    # the lock file's descriptor, from os.open on
        self.tried = False                # acquire() has begun: release() has work to check

    def acquire(self):
        self.tried = True
        while True:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                                  | os.O_NOFOLLOW, 0o644)
            except OSError as err:
                if err.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
                    raise                       # a read-only folder, a full disk: run_command's
                what = ("a directory" if err.errno == errno.EISDIR else
                        f"not a file numpyvae can lock ({err.strerror})")
                raise RunLocked(f"{self.path} is {what}, where numpyvae keeps the run folder's "
                                f"lock: remove it or move it out of the way, then run this "
                                f"command again") from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(self.fd)[0]
                self._close()
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunLocked(
                        f"{self.folder} is in use by another numpyvae process (PID {holder}, "
                        f"holding {self.path}); wait for it to finish or stop it, or give "
                        f"{self.flag} a path elsewhere") from None
                raise RunLocked(f"cannot lock {self.path} ({err.strerror}); this file system "
                                f"does not support locks — give {self.flag} a path on a local "
                                f"disk") from None
            if self._names_ours():
                break
            self._close()                 # locked a file its holder had just removed: again
        # The PID and purpose, for others' messages; on a full disk the lock is held all the
        # same, and the write that matters will say so.
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n{self.purpose}\n".encode(), 0)
        return self

    def _names_ours(self):
        """Does the path still name the file open as self.fd?"""
        try:
            return os.path.samestat(os.fstat(self.fd), os.stat(self.path, follow_symlinks=False))
        except FileNotFoundError:
            return False

    def _close(self):
        fd, self.fd = self.fd, None
        os.close(fd)

    def release(self):
        """Remove the lock file and close it — also after an acquire() that was interrupted
        anywhere (even between os.open's return and the assignment of its descriptor): the
        file is removed when this process holds its lock or can take it now. A file that no
        process locks is a leftover, whoever created it; another holder's is left alone."""
        if not self.tried:
            return
        self.tried = False
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                return                                              # nothing there to undo
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a no-op when held
                ours = self._names_ours()
            except OSError:
                ours = False                                        # another process's lock
            if ours:                # a folder made unwritable since: the file stays, unlocked,
                with contextlib.suppress(OSError):      # and the error that mattered is shown
                    self.path.unlink(missing_ok=True)
        finally:
            self._close()

    def __enter__(self):
        try:
            return self.acquire()
        except BaseException:
            self.release()
            raise

    def __exit__(self, *exc):
        self.release()


def holder(folder):
    """(PID, purpose) of the process holding `folder`'s lock now, or None when none does — for
    a command that only reads the run: nothing is created, and a lock is held (shared) only for
    the moment it takes to ask."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NONBLOCK)
    except OSError:
        return None                                    # none there, or not a file to lock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            return _holder(fd) if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_if_run_folder(folder, flag):
    """The acquired lock of `folder` when it is a run folder (it holds checkpoint.npz or a lock
    file), for a command that writes a file there (sample --out, evaluate --json: `flag`, which
    a refusal names); else None."""
    folder = Path(folder)
    if (folder / "checkpoint.npz").exists() or os.path.lexists(folder / LOCK_NAME):
        lock = RunLock(folder, flag)
        try:
            return lock.acquire()
        except BaseException:
            lock.release()
            raise
    return None
