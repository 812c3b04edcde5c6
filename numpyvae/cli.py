"""What the command-line entry points (train, evaluate, sample, and the reference's) share:
the usage error, the flag types, and `run_command`, which turns every error a command reports
into one line and its exit status. The memory check is numpyvae/memory.py; the evaluation
helpers and --json output live with evaluation (numpyvae/evaluate.py).
"""
import argparse
import sys

import numpy as np


class UsageError(Exception):
    """A request that cannot be carried out as asked; the message says what to change."""


# ---------------------------------------------------------------------------- flags

def argument_parser(prog, description):
    """A command's argparse parser. Flags are never abbreviated (argparse would take `--lat 3`
    for `--latent-dim 3` without a word); the description is the first line of `description`
    (a module docstring), and none under `python -OO`, which strips docstrings."""
    return argparse.ArgumentParser(prog=prog, description=(description or "").split("\n")[0],
                                   allow_abbrev=False)


def flag_type(convert, accept, expected):
    """An argparse type: convert(text), refused unless accept(value), naming what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def int_in(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound when high is None). A bound
    keeps a size or count a machine could never hold from reaching arithmetic that overflows."""
    if high is None:
        words = "a positive integer" if low == 1 else f"an integer ≥ {low}"
    else:
        words = f"an integer from {low} to {high:,}"
    return flag_type(int, lambda v: low <= v and (high is None or v <= high), words)


positive_int = int_in(1)
nonnegative_int = int_in(0)
positive_float = flag_type(float, lambda v: np.isfinite(v) and v > 0, "a positive number")


# ---------------------------------------------------------------------------- running a command

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def say(message):
    """A line on stderr, unless the terminal is gone (after SIGHUP)."""
    try:
        print(message, file=sys.stderr)
    except (OSError, ValueError):
        pass


def run_command(work, os_error=None):
    """Run a command's work() — which returns its exit status — and turn what any command may
    meet into one line on stderr and the exit status:
        UsageError                            2    what to change in the request
        DataError, CheckpointError, RunLocked 1    the data, the checkpoint, a busy run folder
        OSError                               1    worded by os_error(e), else str(e)
        KeyboardInterrupt (Ctrl-C)            130  "interrupted"
    What is a command's own (train: a stop with a checkpoint, a non-finite loss) it handles
    inside work."""
    from .checkpoint import CheckpointError     # imported here: these modules import this one
    from .fetch import DataError
    from .runlock import RunLocked

    try:
        return work()
    except UsageError as e:
        say(f"error: {e}")
        return EXIT_USAGE
    except (DataError, CheckpointError, RunLocked) as e:
        say(f"error: {e}")
        return EXIT_ERROR
    except OSError as e:
        say(f"error: {os_error(e) if os_error else e}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
