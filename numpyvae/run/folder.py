"""A run folder, and where a command's outputs may go.

A run is one folder holding RUN_FILES. It behaves as a transaction:
- one command at a time holds it (numpyvae/run/lock.py);
- every file is written by numpyvae.atomic.atomic_write — a temp file beside it, fsync,
  rename — so a crash leaves the previous version whole, and a temp file of a killed writer is
  removed by the next command that writes that file there (`remove_stale_temp_files`): only
  names atomic_write makes, for the files that command writes — a file of the user's stays,
  whatever its name;
- a run's files appear with its first checkpoint (`write_config`, `write_metrics` come after
  it), and the folders a command made for a run that never started are removed again
  (`folders_to_make`, `remove_if_empty`), so a failed start leaves nothing;
- an output never replaces anything (`check_output_path`), nor a run's own files
  (`refuse_taken`, `refuse_run_file`).
SIGINT, SIGTERM and SIGHUP stop a run the same way: numpyvae/run/signals.py.
"""
import csv
import io
import json
import os
import tempfile
from pathlib import Path

from ..atomic import TEMP_NAME, atomic_write
from ..errors import UsageError
from .lock import LOCK_NAME

# The files a run writes into its folder; a new run never overwrites any of them.
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.csv", "elbo.png", "reconstructions.png",
             "samples.png", "latent.png")


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
    """Remove the temp files atomic_write left in `folder` for any of `names` — the files the
    caller writes there — when its process was killed mid-write (those of a process that no
    longer exists), and links planted under such a name. Nothing else: not a name atomic_write
    does not make, nor a temp file of another file (.notes.json.999999.tmp is the user's).
    Only for a caller that holds the folder's run lock: then no other numpyvae process is
    writing them. Returns the removed paths."""
    removed = []
    for p in Path(folder).iterdir():
        m = TEMP_NAME.fullmatch(p.name)
        if m and m["name"] in names and not _alive(int(m["pid"])) \
                and (p.is_symlink() or p.is_file()):
            p.unlink(missing_ok=True)                    # a link itself, never its target
            removed.append(p)
    return removed


def write_config(folder, config):
    """config.json: the run's settings (a dict), indented."""
    atomic_write(Path(folder) / "config.json",
                 lambda f: f.write(json.dumps(config, indent=2).encode() + b"\n"))


def write_metrics(folder, history, columns, mode, names=None):
    """metrics.csv: one row per epoch of `history` ({column: values}), the given columns (the
    first is the epoch) then the binarization `mode`; `names` ({column: header}) renames a
    column's header (the training loss of an iwae run)."""
    names = names or {}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([names.get(c, c) for c in columns] + ["binarize"])
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


def check_output_path(path, flag):
    """UsageError, before any computation, unless `path` (the text given to `flag`) names a new
    file that can be written once the work is done: not empty, not a folder (one that exists,
    or a name ending in "/", "." or ".."), nothing that exists already — a file of the user's,
    an earlier result, a device, a FIFO, a link: a command's outputs go to paths it creates —
    in a folder that exists and takes new files."""
    text = os.fspath(path)
    if not text:
        raise UsageError(f'{flag} "": an empty path; name the file to write')
    if os.path.basename(text) in ("", ".", "..") or os.path.isdir(text):
        raise UsageError(f"{flag} {text}: that is a folder; name a file in it")
    if os.path.lexists(text):
        raise UsageError(f"{flag} {text}: {file_kind(text)} is there already; an output never "
                         f"replaces anything — choose a new name, or move that away first")
    folder = os.path.dirname(text) or "."
    if not os.path.isdir(folder):
        found = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UsageError(f"{flag} {text}: the folder {folder} {found}; create it or write "
                         f"elsewhere")
    try:
        tempfile.TemporaryFile(dir=folder).close()     # a new file there, as atomic_write makes
    except OSError as e:
        raise UsageError(f"{flag} {text}: cannot write in {folder} ({e.strerror or e}); write "
                         f"elsewhere") from None
