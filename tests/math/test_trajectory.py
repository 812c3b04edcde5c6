"""Oracle: PyTorch training the reference Model — 50 full steps (forward, backward, Adam).

Real sizes (784-200-20, batch 128), float64, identical batches and ε on both sides.
Tolerance 1e-9 by rel_err on the parameters: each step is equal to ~1e-15, and Adam's
division by √v amplifies small differences in early steps where v is tiny, so the error
grows with the trajectory; 1e-9 is far below any real discrepancy (a wrong gradient or
Adam formula shows at 1e-3 and up within a few steps).
"""
import numpy as np
import pytest
import torch

import numpyvae as nv
from checks import assert_all_close
from reference.model import from_params, neg_elbo

TOL = 1e-9


@pytest.mark.parametrize("activation,init,latent,batch,adam_eps", [
    ("leaky_relu", "torch", 20, 128, 1e-8),          # the notebook's
    ("tanh", "glorot", 50, 20, 1e-4),                # the burda2015 preset's
])
def test_50_training_steps_equal_torch(activation, init, latent, batch, adam_eps):
    model = nv.VAE(784, 200, latent, dtype="float64", seed=0, activation=activation, init=init,
                   backend="numpy")
    tmodel = from_params(model.params, dtype=torch.float64, activation=activation)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3, eps=adam_eps)
    opt = nv.Adam(model.num_params, "float64", lr=1e-3, eps=adam_eps, backend="numpy")
    gflat, grads = model.new_grads()
    rng = np.random.default_rng(0)
    pool = (rng.random((1024, 784)) < rng.random(784)).astype(np.float64)  # digit-like sparsity
    for step in range(50):
        x = pool[rng.choice(len(pool), batch, replace=False)]
        eps = rng.standard_normal((batch, latent))
        loss, _ = model.loss_and_grads(x, eps, out=grads)
        opt.step(model.flat, gflat)
        topt.zero_grad()
        t_loss, _ = neg_elbo(tmodel, torch.tensor(x), torch.tensor(eps))
        t_loss.backward()
        topt.step()
        assert abs(loss - t_loss.item()) <= TOL * abs(t_loss.item()), (step, loss, t_loss.item())
    ref = {k: p.detach().numpy() for k, p in tmodel.named_parameters()}
    assert_all_close(model.params, ref, TOL, "parameters after 50 steps")
