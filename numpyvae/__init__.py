"""numpyvae: the variational autoencoder of Kingma & Welling (2014) from scratch in NumPy.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

Never imports torch; the PyTorch reference lives in the separate `reference` package.
"""
from .adam import Adam
from .model import VAE, param_shapes

__all__ = ["VAE", "Adam", "param_shapes"]
__version__ = "0.1.0"
