"""The hidden layers' activations (LeakyReLU, tanh) and the logistic sigmoid.

    leaky_relu(a) = a if a > 0 else slope·a          slope = 0.2 in the source notebook
    d/da          = 1 if a > 0 else slope             at a == 0 this is `slope`, as in PyTorch
                                                     (aten leaky_relu_backward: self > 0 ? g : g·slope)
    tanh(a)       = (e^a − e^(−a)) / (e^a + e^(−a))   Burda et al. (2015)'s hidden units
    d/da          = 1 − tanh(a)² = 1 − h²             from the layer's *output* h, as PyTorch's
                                                     tanh_backward(grad, output) does
    sigmoid(a)    = 1 / (1 + e^(−a))                  via scipy.special.expit, which never overflows

Each hidden activation is a pair (forward, backward) in ACTIVATIONS; a backward takes
(dout, a, h) — the gradient at the output, the layer's input and its output — and uses
whichever of the two it needs.
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


def tanh(a):
    """(N, H) -> (N, H)."""
    return np.tanh(a)


def tanh_backward(dout, h):
    """Gradient through tanh given its *output* h = tanh(a): dout ⊙ (1 − h²).  (N, H)."""
    return dout * (1 - h * h)


ACTIVATIONS = {
    "leaky_relu": (leaky_relu, lambda dout, a, h: leaky_relu_backward(dout, a)),
    "tanh": (tanh, lambda dout, a, h: tanh_backward(dout, h)),
}


def check_name(name):
    """The activation's name, or a ValueError listing the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return name


def sigmoid(a):
    """Numerically stable logistic function; keeps a's dtype."""
    return expit(a)
