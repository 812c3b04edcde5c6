"""numpyvae: the variational autoencoder of Kingma & Welling (2014) from scratch in NumPy.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

Every module of the library is an attribute (nv.model, nv.data, nv.kernels, …); the commands
(numpyvae.train, .evaluate, .sample) are run with `python -m`. Never imports torch; the
PyTorch reference lives in the separate `reference` package.
"""
import signal as _signal
import sys as _sys

__all__ = ["VAE", "Adam", "param_shapes"]
__version__ = "0.1.0"


def _interrupt(signum, frame):
    """SIGTERM and SIGHUP as Ctrl-C is, for a command (`python -m numpyvae…`): an exception
    that carries the signal (`signum`), so that a stop during start-up — these imports, the
    command's own — ends in one line and the exit status 128 + signum (numpyvae.cli), not in
    silence. A command that trains replaces this with its own (numpyvae.runfolder.StopRequest)."""
    stop = KeyboardInterrupt()
    stop.signum = signum
    raise stop


# A command's process: `python -m …` (sys.argv[0] is "-m" while -m imports the package) or
# the `numpyvae` console script; an `import numpyvae` of a program of its own is left alone.
_COMMAND = _sys.argv[:1] == ["-m"] or _sys.argv[0].replace("\\", "/").split("/")[-1] in (
    "numpyvae", "numpyvae.exe", "numpyvae-script.py")

if _COMMAND:
    for _s in (_signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(_s) == _signal.SIG_DFL:       # not one its parent chose to ignore
            _signal.signal(_s, _interrupt)

try:
    from . import (activations, adam, backend, checkpoint, cli, config, data, fetch, fused, idx,
                   kernels, likelihood, linear, loss, memory, model, plots, runfolder,
                   runlock)
    from .adam import Adam
    from .model import VAE, param_shapes
    import tqdm as _tqdm                      # the commands' progress bars  # noqa: F401
except KeyboardInterrupt as _e:
    # `python -m numpyvae.<command>` imports this package, and with it numpy, scipy, numba,
    # matplotlib and tqdm, before the command's own code runs: a Ctrl-C (or SIGTERM, SIGHUP)
    # meanwhile ends the command with one line and the shell's 128 + signal, not a traceback.
    if not _COMMAND:
        raise
    _signum = getattr(_e, "signum", _signal.SIGINT)
    try:
        print("interrupted" + ("" if _signum == _signal.SIGINT else
                               f" ({_signal.Signals(_signum).name})"), file=_sys.stderr)
    except (OSError, ValueError, AttributeError):      # no usable stderr: the status says it
        pass
    _sys.exit(128 + _signum)
