"""numpyvae: the variational autoencoder of Kingma & Welling (2014) from scratch in NumPy.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

Every module of the library is an attribute (nv.model, nv.data, nv.kernels, …); the commands
(numpyvae.train, .evaluate, .sample) are run with `python -m`. Never imports torch; the
PyTorch reference lives in the separate `reference` package.
"""
import sys as _sys

__all__ = ["VAE", "Adam", "param_shapes"]
__version__ = "0.1.0"

try:
    from . import (activations, adam, backend, checkpoint, cli, config, data, fetch, fused, idx,
                   kernels, likelihood, linear, loss, memory, model, plots, runfolder,
                   runlock)
    from .adam import Adam
    from .model import VAE, param_shapes
    import tqdm as _tqdm                      # the commands' progress bars  # noqa: F401
except KeyboardInterrupt:
    # `python -m numpyvae.<command>` imports this package, and with it numpy, scipy, numba,
    # matplotlib and tqdm, before the command's own code runs: a Ctrl-C meanwhile ends the
    # command with one line and the shell's 130, not a traceback. (While -m locates its module, sys.argv[0]
    # is "-m"; an `import numpyvae` of a program of its own raises as usual.)
    if _sys.argv[:1] != ["-m"]:
        raise
    print("interrupted", file=_sys.stderr)
    _sys.exit(130)
