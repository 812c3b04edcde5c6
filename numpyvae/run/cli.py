"""What the command-line entry points (train, evaluate, sample, the reference's and the
benchmarks') share: the flag types, the terminal, and `run_command`, which turns every error a
command reports (numpyvae/errors.py) into one line and its exit status. Output paths and run
folders are numpyvae/run/folder.py's; the memory check numpyvae/run/memory.py's.

A command's results never depend on its terminal (`terminal`): a closed pipe (`| head -1`), a
full device (`>/dev/full`), a closed descriptor (`2>&-`) or a terminal that cannot show
Unicode (`PYTHONIOENCODING=ascii`, a POSIX locale) only loses the lines printed, never the
training, a checkpoint or a JSON file.
"""
import argparse
import contextlib
import difflib
import logging
import math
import os
import re
import signal
import sys

from ..errors import CheckpointError, DataError, RunLocked, UsageError


# ---------------------------------------------------------------------------- flags

class _Parser(argparse.ArgumentParser):
    def _print_message(self, message, file=None):       # --help and usage errors
        if message:
            Terminal(file or sys.stderr).write(message)

    def parse_args(self, args=None, namespace=None):
        """argparse's, and a mistyped flag's refusal names the flag it is nearest to."""
        args, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._nearest(extras)}")
        return args

    def _nearest(self, words):
        """' (did you mean --epochs?)' for the unknown flags among `words`: the one flag a
        name begins (an abbreviation, never taken as the flag), else the closest spelling."""
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        near = {}
        for word in words:
            name = word.split("=", 1)[0]
            if not name.startswith("--") or name in near:
                continue
            match = [f for f in flags if f.startswith(name)]
            match = match if len(match) == 1 else difflib.get_close_matches(name, flags, n=1,
                                                                             cutoff=0.6)
            if match:
                near[name] = match[0]
        if len(near) == 1:
            return f" (did you mean {next(iter(near.values()))}?)"
        return (" (" + "; ".join(f"{k}: did you mean {v}?" for k, v in near.items()) + ")"
                if near else "")

    def error(self, message):
        """A refused command line: the error and where the flags are listed, in two lines — not
        the whole usage, which buried the one line that matters (19 lines for train's)."""
        self._print_message(f"usage: {self.prog} [flags]   (--help lists every flag)\n"
                            f"{self.prog}: error: {message}\n", sys.stderr)
        self.exit(2)


def argument_parser(prog, description):
    """A command's argparse parser. Flags are never abbreviated (argparse would take `--lat 3`
    for `--latent-dim 3` without a word); the description is the first line of `description`
    (a module docstring), and none under `python -OO`, which strips docstrings; its help and
    errors print on any terminal (`Terminal`)."""
    return _Parser(prog=prog, description=(description or "").split("\n")[0],
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


def add_checkpoint_argument(parser):
    """The CHECKPOINT argument of the commands that read a run (evaluate, sample and the
    reference's evaluate): a run folder or a checkpoint file. An empty one is refused as the
    usage error it is; it would have read ./checkpoint.npz."""
    parser.add_argument("checkpoint",
                        type=flag_type(str, bool, "a run folder or a checkpoint file"),
                        help="a run folder (holding checkpoint.npz) or a checkpoint file")


def decimal_int(text):
    """int(text) for plain decimal digits only: int() itself also takes "1_0" and other
    scripts' digits ("١"), which no one means as a number on a command line."""
    if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
        raise ValueError(text)
    return int(text)


def int_in(low, high=None):
    """An argparse type: an integer in [low, high] (no upper bound when high is None). A bound
    keeps a size or count a machine could never hold from reaching arithmetic that overflows."""
    if high is None:
        words = "a positive integer" if low == 1 else f"an integer ≥ {low}"
    else:
        words = f"an integer from {low} to {high:,}"
    return flag_type(decimal_int, lambda v: low <= v and (high is None or v <= high), words)


positive_int = int_in(1)
nonnegative_int = int_in(0)
positive_float = flag_type(float, lambda v: math.isfinite(v) and v > 0, "a positive number")


# ---------------------------------------------------------------------------- the terminal

# How a line is spelt on a terminal whose encoding lacks these characters (ASCII, Latin-1);
# anything else it cannot show becomes "?".
ASCII_SPELLING = str.maketrans({
    "−": "-", "–": "-", "—": "--", "…": "...", "≥": ">=", "≤": "<=", "≈": "~", "×": "x",
    "·": "*", "→": "->", "←": "<-", "²": "^2", "’": "'", "‘": "'", "“": '"', "”": '"',
    "ε": "eps", "σ": "sigma", "μ": "mu", "θ": "theta", "Σ": "sum", "Δ": "delta", "∞": "inf",
    **{chr(0x2080 + d): str(d) for d in range(10)},                   # subscripts: L₅₀₀₀
})


class Terminal:
    """stdout or stderr as a command writes to it. A write that fails — the reader of a pipe
    is gone (EPIPE), the device is full, the descriptor is closed — marks the stream `lost`
    and is dropped, as are all later ones, so that printing never stops a command; text the
    stream cannot encode is spelt in ASCII (ASCII_SPELLING) instead of raising. Everything
    else (isatty, fileno, encoding, for tqdm) is the stream's own."""

    def __init__(self, stream):
        self.stream, self.lost = stream, stream is None

    def write(self, text):
        if not self.lost:
            try:
                self.stream.write(self._encodable(text))
            except (OSError, ValueError):               # ValueError: a closed file
                self.lost = True
        return len(text)

    def flush(self):
        if not self.lost:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.lost = True

    def _encodable(self, text):
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        try:
            text.encode(encoding)
            return text
        except UnicodeEncodeError:
            return text.translate(ASCII_SPELLING).encode(encoding, "replace").decode(encoding)
        except LookupError:                             # an encoding Python does not know
            return text

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextlib.contextmanager
def terminal():
    """For the length of a command: stdout and stderr as `Terminal`s, and descriptors 0–2
    open (on /dev/null where the caller closed them: else the first file the command opens
    would get descriptor 2, and whatever is written to stderr would land in it). Afterwards a
    lost stream is pointed at /dev/null, so the interpreter's last flush of it raises nothing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)              # the lowest free descriptor: fd
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err = Terminal(sys.stdout), Terminal(sys.stderr)
    try:
        yield
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved
        for stream in (out, err):
            if stream.lost and stream.stream is not None:
                with contextlib.suppress(Exception):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.stream.fileno())


class _SayHandler(logging.Handler):
    """The package's log records (data fetch progress, a notice) as lines through `say`."""

    def emit(self, record):
        say(one_line(self.format(record)))


def _log_to_stderr():
    logger = logging.getLogger("numpyvae")
    if not any(isinstance(h, _SayHandler) for h in logger.handlers):
        logger.addHandler(_SayHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


# ---------------------------------------------------------------------------- running a command

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def say(message):
    """A line on stderr, whatever the terminal (`Terminal`): gone after SIGHUP, closed, full,
    or unable to show Unicode."""
    stream = sys.stderr if isinstance(sys.stderr, Terminal) else Terminal(sys.stderr)
    stream.write(f"{message}\n")
    stream.flush()


def one_line(text):
    """text with its control characters written as escapes (a newline as \\n): an error names
    what it was given, and a path holding a newline must not split the error's one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m[0])[1:-1], str(text))


def signal_name(signum):
    return signal.Signals(signum).name


def os_words(e):
    """An OSError as a line for a person: "<file>: No space left on device", not
    "[Errno 28] …" — the file first, as every other error names it."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}" + (f" ({e.filename2})" if e.filename2 else "")
    return e.strerror or str(e)


def run_command(work, os_error=None):
    """Run a command's work() — which returns its exit status — on the command's `terminal`,
    with the package's log records on stderr, and turn what any command may meet into one
    line on stderr and the exit status:
        UsageError                            2    what to change in the request
        DataError, CheckpointError, RunLocked 1    the data, the checkpoint, a busy run folder
        OSError                               1    worded by os_error(e), else "<file>:
                                                   <what the system said>"
        KeyboardInterrupt (Ctrl-C)            130  "interrupted"; 128 + N for the signal N
                                                   it carries as `signum` (SIGTERM, SIGHUP)
    What is a command's own (train: a stop with a checkpoint, a non-finite loss) it handles
    inside work."""
    with terminal():
        _log_to_stderr()
        try:
            return work()
        except UsageError as e:
            say(f"error: {one_line(e)}")
            return EXIT_USAGE
        except (DataError, CheckpointError, RunLocked) as e:
            say(f"error: {one_line(e)}")
            return EXIT_ERROR
        except OSError as e:
            say(f"error: {one_line(os_error(e) if os_error else os_words(e))}")
            return EXIT_ERROR
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            say("interrupted" if signum == signal.SIGINT else
                f"interrupted ({signal_name(signum)})")
            return 128 + signum
