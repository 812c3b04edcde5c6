"""A command's results as JSON (`--json PATH`), and the refusal of results that are not numbers.

The path is checked before the evaluation (`check_json_path`), not minutes later when the file
is written; the file is written atomically, under the lock of a run folder it lands in
(`write_json`); a result that is not finite is refused, never written as NaN.
"""
import json
import math
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import CheckpointError, RunLocked, UsageError
from .folder import check_output_path, refuse_run_file, remove_stale_temp_files
from .lock import lock_if_run_folder


def check_json_path(path, reading=None):
    """Check a --json PATH before an evaluation, not minutes later when the file is written: it
    must name a file (check_output_path) in a folder that exists, not a file of a run or the
    checkpoint `reading`, and a run folder must not be in use by a training (its lock is taken
    and given back at once; write_json takes it again to write)."""
    refuse_run_file(path, "--json", reading)         # the more telling refusal first
    check_output_path(path, "--json")
    lock = lock_if_run_folder(Path(path).parent, "--json")
    if lock is not None:
        lock.release()


def non_finite(values):
    """The entries of `values` ({name: value}) that are not finite numbers, in words ("" if none):
    an evaluation that overflowed has no number to report, and JSON has none to write."""
    return ", ".join(f"{k} = {v}" for k, v in values.items()
                     if isinstance(v, (float, np.floating)) and not math.isfinite(v))


def refuse_non_finite(values, model, checkpoint):
    """CheckpointError when an evaluation's `values` are not finite: a model whose parameters
    overflow the computation (weights of 1e30) has no number to report — an error, never
    `nan` with exit status 0."""
    bad = non_finite(values)
    if bad:
        raise CheckpointError(f"{checkpoint}: its model evaluates to {bad}, not a finite number "
                              f"(its largest parameter is {np.abs(model.flat).max():.3g} in "
                              f"magnitude); there is nothing to report")


def write_json(path, result, wait=10.0):
    """`result` (a dict) as indented JSON at --json PATH, atomically, holding the lock of a run
    folder while it writes there (and removing what a killed writer left there, as every
    command that writes into a run folder does). A folder held by another command is waited
    for up to `wait` seconds — long enough for another short writer (two evaluations of one run
    finishing together), while a training, which holds its folder for hours, is still refused.
    Standard JSON only: a result that is not finite is refused (CheckpointError), not written
    as NaN."""
    bad = non_finite(result)
    if bad:
        raise CheckpointError(f"--json {path}: {bad} is not a finite number; nothing written")
    text = json.dumps(result, indent=2, allow_nan=False)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock = lock_if_run_folder(Path(path).parent, "--json")
            break
        except RunLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        if lock is not None:
            remove_stale_temp_files(Path(path).parent, {Path(path).name})
        if not atomic_write(path, lambda f: f.write(text.encode() + b"\n"), replace=False):
            raise UsageError(f"--json {path}: something appeared there while this ran; it is "
                             f"left as it is (the results are printed above)")
    except OSError as e:
        raise UsageError(f"cannot write --json {path}: {e.strerror or e}") from None
    finally:
        if lock is not None:
            lock.release()
