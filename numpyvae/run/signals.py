"""How a signal stops a training run: SIGINT, SIGTERM and SIGHUP the same way.

Before the loop (`StopRequest.starting`), a signal raises `Stopped`: nothing to save yet. From
then on it sets a flag, and the loop finishes its step and writes a checkpoint
(numpyvae/train.py, reference/train.py). A command's start-up — its imports — is
numpyvae/run/startup.py's.
"""
import signal
import sys

from tqdm import tqdm

class Stopped(KeyboardInterrupt):
    """A signal before training began (start-up: data, model, kernels): nothing to save.
    `signum` is the signal, as numpyvae.run.cli.run_command reads it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) stop a run the same way.

    During start-up (`starting`, until the training loop begins) a signal raises Stopped: there
    is nothing to save yet. From then on it sets a flag: the loop finishes its step, writes the
    checkpoint, then exits; during the final pictures, the picture being drawn is finished and
    the rest are left for `--resume` to redraw.

    A signal whose disposition is "ignore" when the run starts stays ignored: the user chose
    that (`nohup` ignores SIGHUP, a shell's background job SIGINT), and the run goes on
    through it.

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
        self._old = {s: signal.signal(s, self) for s in self.SIGNALS
                     if signal.getsignal(s) != signal.SIG_IGN}      # an ignored one stays so
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_IGN if self.ignore_after and self.signum else h)
