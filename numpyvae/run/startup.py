"""A command's start-up: a signal while its libraries load ends it in one line.

`python -m numpyvae.train` (and every command, the reference's and the benchmarks' too) loads
numpy, scipy, numba, matplotlib and the rest before its own code runs. Each command module puts
those imports inside `starting(__name__ == "__main__")`:

    from numpyvae.run.startup import starting

    with starting(__name__ == "__main__"):   # a signal while these load: one line, 128 + signal
        import numpy as np
        ...

Run as the program, SIGTERM and SIGHUP then raise as Ctrl-C does (`as_ctrl_c`: a
KeyboardInterrupt carrying `signum`) for the rest of the process — run_command
(numpyvae/run/cli.py) turns it into its one line and exit status — and one that arrives while
the imports run ends the process here, with "interrupted (SIGTERM)" and 128 + signal, not a
silent death or a traceback of the import machinery. A signal whose disposition is "ignore"
when the command starts (nohup, a background job) stays ignored. Imported by anything else (a
test, a program of one's own) it changes nothing: `import numpyvae` installs no handler.

Imports only the standard library, so that it works before anything else is loaded.
"""
import contextlib
import signal
import sys

# The signals that stop a command as Ctrl-C (SIGINT) does.
STOPPING = (signal.SIGTERM, signal.SIGHUP)


def interrupt(signum, frame):
    """A handler: raise KeyboardInterrupt, as Ctrl-C does, carrying the signal as `signum`."""
    stop = KeyboardInterrupt()
    stop.signum = signum
    raise stop


def as_ctrl_c():
    """SIGTERM and SIGHUP raise as Ctrl-C does (`interrupt`), each where its disposition is
    the default: one the command's parent chose to ignore stays ignored."""
    for s in STOPPING:
        if signal.getsignal(s) == signal.SIG_DFL:
            signal.signal(s, interrupt)


@contextlib.contextmanager
def starting(command):
    """For the imports of a command module: when `command` (the module runs as the program), a
    signal meanwhile ends the process in one line and 128 + signal; else nothing."""
    if not command:
        yield
        return
    as_ctrl_c()
    try:
        yield
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        try:
            print("interrupted" + ("" if signum == signal.SIGINT else
                                   f" ({signal.Signals(signum).name})"), file=sys.stderr)
        except (OSError, ValueError, AttributeError):      # no usable stderr: the status says it
            pass
        sys.exit(128 + signum)
