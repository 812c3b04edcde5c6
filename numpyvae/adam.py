"""Adam (Kingma & Ba 2015), with torch.optim.Adam's semantics and defaults.

For step t = 1, 2, … and gradient g (PyTorch's single-tensor update, weight_decay 0):
    m ← m + (1 − β₁)(g − m)                  (torch's lerp_)
    v ← β₂ v + (1 − β₂) g²
    p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)     ε outside the square root
Works on one flat buffer, so the whole model is updated in one pass.
`numpy_update` is the readable update; backend="numba" (the default, numpyvae/backend.py)
does the same as one numba pass (numpyvae.kernels.adam_step), which multiplies by
1/√(1 − β₂ᵗ) where this path divides, so the two differ by one rounding, and which stores a
float32 moment below the smallest normal number (1.2e-38) as 0: subnormal numbers are slow on
most CPUs, and such a moment moves no bit of a weight not ≈ 0 (kernels.adam_step says how
this was measured).
"""
import numpy as np

from . import backend as backends


class Adam:
    def __init__(self, size, dtype="float32", lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 backend=backends.DEFAULT):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr!r}")
        self._update = backends.adam_update(backend)
        self.backend = backend
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.m = np.zeros(size, dtype)    # first moment  (P,)
        self.v = np.zeros(size, dtype)    # second moment (P,)
        self.t = 0
        self._tmp = np.empty(size, dtype)  # scratch, so a step allocates nothing

    def step(self, params, grads):
        """One update of the flat parameter buffer `params` (P,) in place, from `grads` (P,)."""
        self.t += 1
        self._update(self, params, grads)


def numpy_update(opt, params, grads):
    """Adam's update of step opt.t in NumPy, in place, with opt's scratch buffer."""
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
