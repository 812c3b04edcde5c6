"""numpyvae: the variational autoencoder of Kingma & Welling (2014) from scratch in NumPy.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

Never imports torch; the PyTorch reference lives in the separate `reference` package.
"""
__all__ = ["VAE", "Adam", "param_shapes"]
__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that `python -m numpyvae.train` reaches its own code —
# where a Ctrl-C while numpy loads is one line, not a traceback — before any library loads.
_WHERE = {"VAE": ".model", "param_shapes": ".model", "Adam": ".adam"}


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
