"""LeakyReLU and the logistic sigmoid.

    leaky_relu(a) = a if a > 0 else slope·a          slope = 0.2 in the source notebook
    d/da          = 1 if a > 0 else slope             at a == 0 this is `slope`, as in PyTorch
                                                     (aten leaky_relu_backward: self > 0 ? g : g·slope)
    sigmoid(a)    = 1 / (1 + e^(−a))                  via scipy.special.expit, which never overflows
"""
import numpy as np
from scipy.special import expit

SLOPE = 0.2


def leaky_relu(a, slope=SLOPE):
    """(N, H) -> (N, H)."""
    return np.where(a > 0, a, a * a.dtype.type(slope))


def leaky_relu_backward(dout, a, slope=SLOPE):
    """Gradient through LeakyReLU given its *input* a.  (N, H) -> (N, H)."""
    return np.where(a > 0, dout, dout * dout.dtype.type(slope))


def sigmoid(a):
    """Numerically stable logistic function; keeps a's dtype."""
    return expit(a)
