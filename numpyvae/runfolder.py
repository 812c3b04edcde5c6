"""A run folder, and how every file of numpyvae is written.

A run is one folder holding RUN_FILES. It behaves as a transaction:
- one command at a time holds it (numpyvae.runlock);
- every file is written by `atomic_write` — a temp file beside it, fsync, rename — so a crash
  leaves the previous version whole, and a temp file of a killed writer is removed by the next
  command that takes the folder (`remove_stale_temp_files`);
- a run's files appear with its first checkpoint (`write_config`, `write_metrics` come after
  it), and the folders a command made for a run that never started are removed again
  (`folders_to_make`, `remove_if_empty`), so a failed start leaves nothing;
- SIGINT, SIGTERM and SIGHUP stop a run the same way (`StopRequest`).
"""
import contextlib
import csv
import io
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from .cli import UsageError
from .runlock import LOCK_NAME

# The files a run writes into its folder; a new run never overwrites any of them.
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.csv", "elbo.png", "reconstructions.png",
             "samples.png", "latent.png")


# ---------------------------------------------------------------------------- writing files

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


# .<name>.<pid>.<random>.tmp, and .<name>.<pid>.tmp of numpyvae before it drew the random part
_TEMP_NAME = re.compile(r"\.(?P<name>.+?)\.(?P<pid>\d+)(?:\.[a-z0-9_]+)?\.tmp")


def _alive(pid):
    """Is there a process `pid` (this one included)? Its temp files are not stale."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)                          # signal 0: asks whether it exists, sends nothing
    except PermissionError:                      # it does, another user's
        return True
    except (ProcessLookupError, OverflowError):  # none, or a number no PID can be
        return False
    return pid > 0                               # 0 and -1 name process groups, not a process


def remove_stale_temp_files(folder, names):
    """Remove the temp files atomic_write left in `folder` for any of `names` when its process
    was killed mid-write (those of a process that no longer exists), and links planted under
    such a name. Only for a caller that holds the folder's run lock: then no other numpyvae
    process is writing them. Returns the removed paths."""
    removed = []
    for p in Path(folder).iterdir():
        m = _TEMP_NAME.fullmatch(p.name)
        if m and m["name"] in names and not _alive(int(m["pid"])) \
                and (p.is_symlink() or p.is_file()):
            p.unlink(missing_ok=True)                    # a link itself, never its target
            removed.append(p)
    return removed


class OutputNames:
    """The names numpyvae's commands write into a run folder, for remove_stale_temp_files: the
    run's own files, pictures (.png: sample's, whatever --out calls them), results (.json:
    evaluate's --json) and the names in `also`."""

    def __init__(self, also=()):
        self.also = frozenset(also)

    def __contains__(self, name):
        return name in RUN_FILES or name in self.also or name.endswith((".png", ".json"))


def write_config(folder, config):
    """config.json: the run's settings (a dict), indented."""
    atomic_write(Path(folder) / "config.json",
                 lambda f: f.write(json.dumps(config, indent=2).encode() + b"\n"))


def write_metrics(folder, history, columns, mode):
    """metrics.csv: one row per epoch of `history` ({column: values}), the given columns (the
    first is the epoch) then the binarization `mode`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(columns) + ["binarize"])
    for i in range(len(history["epoch"])):
        row = [int(history["epoch"][i])] + [repr(float(history[c][i])) for c in columns[1:]]
        w.writerow(row + [mode])
    atomic_write(Path(folder) / "metrics.csv", lambda f: f.write(buf.getvalue().encode()))


# ---------------------------------------------------------------------------- housekeeping

def folders_to_make(folder):
    """The folders that `folder.mkdir(parents=True)` will create, deepest first."""
    made = []
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


def remove_if_empty(folders):
    """Folders this command made and then wrote nothing into (the data could not be loaded,
    Ctrl-C during a download) are removed again, deepest first, so a failed start leaves no
    trace; a folder holding anything stays."""
    for folder in folders:
        try:
            folder.rmdir()               # only ever succeeds on an empty folder
        except OSError:
            return


def refuse_taken(out, resumable=True):
    """UsageError when `out` already holds files of a run: a new run never overwrites one.
    resumable: the command has a --resume to point at."""
    taken = [f for f in RUN_FILES if (out / f).exists()]
    if not taken:
        return
    if "checkpoint.npz" in taken and not (out / "checkpoint.npz").is_file():
        path = out / "checkpoint.npz"
        raise UsageError(f"{path} is {file_kind(path)}, not a checkpoint: move it out of the "
                         f"way, then run this command again")
    hint = ""
    if "checkpoint.npz" not in taken:
        hint = (" It has no checkpoint.npz: if those are from a run that never reached its first "
                "checkpoint (older numpyvae wrote config.json first), move them away and run "
                "this command again.")
    instead = f"continue it with --resume --out {out}, or " if resumable else ""
    raise UsageError(f"{out} already holds a run ({', '.join(taken)}); {instead}choose another "
                     f"--out.{hint}")


def file_kind(path):
    """What stands at `path`, in words: "a directory", "a FIFO", "a broken link", …"""
    p = Path(path)
    if p.is_symlink() and not p.exists():
        return "a broken link"
    if p.is_symlink():
        return "a link"
    for test, words in ((p.is_dir, "a directory"), (p.is_fifo, "a FIFO"),
                        (p.is_socket, "a socket"), (p.is_block_device, "a device"),
                        (p.is_char_device, "a device"), (p.is_file, "a file")):
        if test():
            return words
    return "not a regular file"


def refuse_run_file(path, flag, reading=None):
    """UsageError when an output `path` (of `flag`) would replace what a run consists of: one
    of RUN_FILES or the lock, in a folder that holds a run, or the checkpoint file `reading`.
    An output goes to a path of its own; a run folder takes new files beside its own."""
    path = Path(path)
    folder = path.parent
    is_run = (folder / "checkpoint.npz").exists() or os.path.lexists(folder / LOCK_NAME)
    if is_run and path.name in RUN_FILES + (LOCK_NAME,):
        raise UsageError(f"{flag} {path}: that is the run's own {path.name} in {folder}; write "
                         f"the output under another name")
    if reading is not None and os.path.exists(path):
        source = Path(reading)
        source = source / "checkpoint.npz" if source.is_dir() else source
        if source.exists() and os.path.samefile(path, source):
            raise UsageError(f"{flag} {path}: that is the checkpoint being read; write the "
                             f"output under another name")


# ---------------------------------------------------------------------------- signals

class Stopped(KeyboardInterrupt):
    """A signal before training began (start-up: data, model, kernels): nothing to save.
    `signum` is the signal, as numpyvae.cli.run_command reads it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) stop a run the same way.

    During start-up (`starting`, until the training loop begins) a signal raises Stopped: there
    is nothing to save yet. From then on it sets a flag: the loop finishes its step, writes the
    checkpoint, then exits; during the final pictures, the picture being drawn is finished and
    the rest are left for `--resume` to redraw.

    ignore_after: once stopping, ignore further signals for the rest of the process instead
    of restoring the old handlers (for the CLI: at interpreter shutdown CPython resets Python
    handlers to the default action, so a second Ctrl-C then would kill the exiting process;
    SIG_IGN is left alone).
    """
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, ignore_after=False):
        self.signum = None
        self.ignore_after = ignore_after
        self.starting = True

    def __call__(self, signum, frame):
        first = self.signum is None
        self.signum = self.signum or signum
        if first and self.starting:
            raise Stopped(signum)
        try:                             # after SIGHUP the terminal may be gone
            tqdm.write(f"\n{signal.Signals(signum).name}: finishing this step and writing a "
                       "checkpoint…" if first else "already stopping; the checkpoint is being "
                       "written", file=sys.stderr)
        except (OSError, ValueError):
            pass

    def __enter__(self):
        self._old = {s: signal.signal(s, self) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_IGN if self.ignore_after and self.signum else h)
