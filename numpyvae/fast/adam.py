"""Adam's update on the numba path: numpyvae/oracle/adam.py's rule as one pass of
kernels.adam_step over the flat buffer. It multiplies by 1/√(1 − β₂ᵗ) where the oracle divides
(one rounding apart), and flushes a float32 moment below the smallest normal number to 0
(`flush_below`; kernels.adam_step says why and how it was measured).
"""
import numpy as np

from .kernels import adam_step


def flush_below(dtype):
    """The numba Adam's flush-to-zero bound for its moments (kernels.adam_step): float32's
    smallest normal number; 0 for float64, whose moments are never flushed."""
    return np.finfo(np.float32).tiny if dtype == np.float32 else dtype.type(0)


def numba_update(opt, params, grads):
    """Adam's update of step opt.t (already counted) in place: params (P,) from grads (P,),
    with opt's moments opt.m, opt.v (P,); allocates nothing."""
    (b1, b2), f = opt.betas, opt.m.dtype.type
    adam_step(params, grads, opt.m, opt.v, f(1 - b1), f(b2), f(1 - b2),
              f(1 / np.sqrt(1 - b2 ** opt.t)), f(opt.eps),
              f(opt.lr / (1 - b1 ** opt.t)), flush_below(opt.m.dtype))
