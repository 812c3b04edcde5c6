"""Adam (Kingma & Ba 2015), the optimizer a user holds, with torch.optim.Adam's semantics and
defaults; its rule is numpyvae/oracle/adam.py.

    opt = nv.Adam(model.num_params, model.dtype)
    opt.step(model.flat, gflat)            # one update of the flat parameter buffer, in place

backend="numba" (the default, numpyvae/backend.py) makes the update as one numba pass
(numpyvae/fast/kernels.py, adam_step), which multiplies by 1/√(1 − β₂ᵗ) where the NumPy rule
divides, so the two differ by one rounding, and which stores a float32 moment below the
smallest normal number (1.2e-38) as 0: subnormal numbers are slow on most CPUs, and such a
moment moves no bit of a weight not ≈ 0 (kernels.adam_step says how this was measured).
"""
import numpy as np

from . import backend as backends
from .oracle.adam import numpy_update

__all__ = ["Adam", "numpy_update"]


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
