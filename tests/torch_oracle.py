"""Run the PyTorch reference on numpyvae's parameters, x and ε, and collect what to compare."""
import numpy as np
import torch

from reference.model import from_params, neg_elbo

TORCH_DTYPE = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}


def torch_loss_and_grads(params, x, eps, activation="leaky_relu"):
    """Loss, the 14 gradients by autograd, and the intermediates, all as numpy."""
    dtype = TORCH_DTYPE[np.asarray(x).dtype]
    model = from_params(params, dtype=dtype, activation=activation)
    loss, parts = neg_elbo(model, torch.as_tensor(x), torch.as_tensor(eps))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    L = parts["z"].shape[0] if parts["z"].dim() == 3 else 1
    inter = {"mu": parts["mean"].detach().numpy(),
             "logvar": parts["log_var"].detach().numpy(),
             "z": parts["z"].detach().numpy(),
             "logits": parts["logits"].detach().reshape(-1, x.shape[1]).numpy()}
    return loss.item(), grads, inter, (parts["recon"].item(), parts["kl"].item(), L)


def ours_intermediates(cache):
    return {"mu": cache["mu"], "logvar": cache["logvar"], "z": cache["z"],
            "logits": cache["logits"]}
