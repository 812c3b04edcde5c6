"""What the command-line entry points (train, evaluate, sample, and the reference's) share:
the usage error and the flag types. The memory check is numpyvae/memory.py; the evaluation
helpers and --json output live with evaluation (numpyvae/evaluate.py).
"""
import argparse

import numpy as np


class UsageError(Exception):
    """A request that cannot be carried out as asked; the message says what to change."""


# ---------------------------------------------------------------------------- flag types

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


positive_int = flag_type(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = flag_type(int, lambda v: v >= 0, "an integer ≥ 0")
positive_float = flag_type(float, lambda v: np.isfinite(v) and v > 0, "a positive number")
