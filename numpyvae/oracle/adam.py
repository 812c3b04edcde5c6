"""Adam's rule (Kingma & Ba 2015) in NumPy, with torch.optim.Adam's semantics.

For step t = 1, 2, … and gradient g (PyTorch's single-tensor update, weight_decay 0):
    m ← m + (1 − β₁)(g − m)                  (torch's lerp_)
    v ← β₂ v + (1 − β₂) g²
    p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)     ε outside the square root
over one flat buffer, so the whole model is updated in one pass. The numba path
(numpyvae/fast/fused.py, `adam_update`) makes the same update in one pass of
kernels.adam_step; numpyvae.adam.Adam, the optimizer a user holds, chooses between the two.
"""
import numpy as np


def numpy_update(opt, params, grads):
    """Adam's update of step opt.t in place: params (P,) from grads (P,), with opt's moments
    opt.m, opt.v (P,) and its scratch opt._tmp (P,), so a step allocates nothing."""
    b1, b2 = opt.betas
    m, v, tmp = opt.m, opt.v, opt._tmp
    np.subtract(grads, m, out=tmp)
    tmp *= 1 - b1
    m += tmp                                  # m ← m + (1−β₁)(g − m)
    v *= b2
    np.multiply(grads, 1 - b2, out=tmp)
    tmp *= grads
    v += tmp                                  # v ← β₂ v + (1−β₂) g g
    step_size = opt.lr / (1 - b1 ** opt.t)
    np.sqrt(v, out=tmp)
    tmp /= np.sqrt(1 - b2 ** opt.t)
    tmp += opt.eps                            # denom = √v / √(1−β₂ᵗ) + ε
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    params -= tmp
