"""numpyvae: the variational autoencoder of Kingma & Welling (2014) from scratch in NumPy.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

The house, from the ground up (each layer imports only those below it; pyproject.toml states
the layers and CI checks them with import-linter):

    errors.py, atomic.py, threads.py   leaves: the error types, atomic file writing, BLAS threads
    oracle/      the readable NumPy oracle: linear, activations, loss, network (forward and
                 backward), adam, likelihood (log importance weights), binarize
    fast/        the numba path, the same numbers: kernels, fused (the step, the log weights),
                 adam, binarize
    datasets/    MNIST and Fashion-MNIST files: IDX parsing, sources, checksums, the cache
    backend.py   the one switch between the two paths
    model.py, adam.py, data.py, likelihood.py   what a user holds: VAE, Adam, load and Batches,
                 log_likelihood
    run/         the run machinery: flags and the terminal, settings, checkpoints, the run folder
                 and its lock, signals, memory, pictures, the evaluation helpers
    train.py, evaluate.py, sample.py, __main__.py   the commands (`python -m numpyvae.train`)

Every module is an attribute of the package (nv.model, nv.data, nv.kernels, …), loaded when
first used: `import numpyvae` itself loads nothing else, installs no signal handler and starts
no thread. Never imports torch; the PyTorch reference lives in the separate `reference` package.
"""
import importlib

__all__ = ["VAE", "Adam", "param_shapes"]
__version__ = "0.1.0"

# The API's names and where each lives.
_NAMES = {"VAE": "numpyvae.model", "Adam": "numpyvae.adam", "param_shapes": "numpyvae.model"}

# nv.<name> for every module, by the name it has always had here (nv.kernels, nv.runfolder, …).
_MODULES = {
    "errors": "numpyvae.errors", "atomic": "numpyvae.atomic", "threads": "numpyvae.threads",
    "oracle": "numpyvae.oracle", "linear": "numpyvae.oracle.linear",
    "activations": "numpyvae.oracle.activations", "loss": "numpyvae.oracle.loss",
    "network": "numpyvae.oracle.network", "binarize": "numpyvae.oracle.binarize",
    "fast": "numpyvae.fast", "kernels": "numpyvae.fast.kernels", "fused": "numpyvae.fast.fused",
    "datasets": "numpyvae.datasets", "idx": "numpyvae.datasets.idx",
    "fetch": "numpyvae.datasets.fetch",
    "backend": "numpyvae.backend",
    "model": "numpyvae.model", "adam": "numpyvae.adam", "data": "numpyvae.data",
    "likelihood": "numpyvae.likelihood",
    "run": "numpyvae.run", "cli": "numpyvae.run.cli", "config": "numpyvae.run.config",
    "checkpoint": "numpyvae.run.checkpoint", "runfolder": "numpyvae.run.folder",
    "runlock": "numpyvae.run.lock", "memory": "numpyvae.run.memory",
    "plots": "numpyvae.run.plots",
    "train": "numpyvae.train", "evaluate": "numpyvae.evaluate", "sample": "numpyvae.sample",
}


def __getattr__(name):
    """nv.VAE, nv.Adam, nv.param_shapes and nv.<module>, imported on first use (PEP 562)."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'numpyvae' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES) | set(_MODULES))
