"""Fully connected layer y = x Wᵀ + b, in PyTorch's layout: W is (out, in), b is (out,).

Forward and backward are pure functions; the caller keeps whatever the backward needs.

    y  = x Wᵀ + b            x: (N, in)   W: (out, in)   b: (out,)   y: (N, out)
    dx = dy W                dW = dyᵀ x   db = Σ_n dy[n]
"""
import numpy as np


def init(fan_in, fan_out, rng, dtype):
    """Draw (W, b) from torch.nn.Linear's default distribution.

    PyTorch initialises the weight with kaiming_uniform_(a=√5), whose bound is
    gain·√(3/fan_in) with gain = √(2/(1+a²)) = √(1/3), i.e. 1/√fan_in; the bias is
    U(−1/√fan_in, 1/√fan_in) too (torch/nn/modules/linear.py, reset_parameters).
    Drawn in float64 from `rng`, then cast, so float32 and float64 models of the same seed
    hold the same numbers up to rounding.
    """
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    W = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)  # (out, in)
    b = rng.uniform(-bound, bound, size=(fan_out,)).astype(dtype)         # (out,)
    return W, b


def forward(x, W, b):
    """y = x Wᵀ + b.  x: (N, in) -> (N, out)."""
    y = x @ W.T          # (N, out)
    y += b
    return y


def backward(dy, x, W, dW, db, need_dx=True):
    """Gradients of a linear layer, written into dW (out, in) and db (out,) in place.

    dy: (N, out), x: (N, in), the layer's input.  Returns dx = dy W, (N, in), or None when
    the input is data (the first layer) and its gradient is not needed.
    """
    np.matmul(dy.T, x, out=dW)      # (out, in)
    np.sum(dy, axis=0, out=db)      # (out,)
    return dy @ W if need_dx else None   # (N, in)


def init_glorot(fan_in, fan_out, rng, dtype):
    """(W, b) with W ~ U(±√(6 / (fan_in + fan_out))) and b = 0 (Glorot & Bengio 2010, eq. 16),
    the initialisation of Burda et al. (2015)'s code. Drawn in float64 from `rng`, then cast."""
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    W = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)  # (out, in)
    b = np.zeros(fan_out, dtype)                                           # (out,)
    return W, b
