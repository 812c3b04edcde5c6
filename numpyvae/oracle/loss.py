"""The two terms of the negative ELBO, elementwise, with their gradients.

−ELBO(x) = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z))              (Kingma & Welling 2014, eq. 3)

Reconstruction: p(x|z) = Π_d Bernoulli(x_d; θ_d), θ = sigmoid(ℓ) with ℓ the decoder's logits.
    −log p(x_d|z) = −x_d log θ_d − (1 − x_d) log(1 − θ_d) = softplus(ℓ_d) − x_d ℓ_d
                  = max(ℓ_d, 0) − x_d ℓ_d + log(1 + e^(−|ℓ_d|))    (finite for any ℓ, e.g. ±1e4)
    ∂/∂ℓ_d        = sigmoid(ℓ_d) − x_d
  For x_d ∈ [0, 1] (grey levels) this is the same cross-entropy, as in the notebook's
  binary_cross_entropy.

KL to the prior N(0, I) of q(z|x) = N(μ, diag σ²), with v = log σ²:
    KL = ½ Σ_k (μ_k² + e^(v_k) − 1 − v_k)          (Kingma & Welling 2014, App. B:
                                                    −KL = ½ Σ (1 + log σ² − μ² − σ²))
    ∂KL/∂μ_k = μ_k          ∂KL/∂v_k = ½ (e^(v_k) − 1)
"""
import numpy as np

from .activations import sigmoid


def bernoulli_nll(logits, x):
    """Elementwise −log Bernoulli(x; sigmoid(logits)); logits (..., D), x broadcastable."""
    return np.maximum(logits, 0) - x * logits + np.log1p(np.exp(-np.abs(logits)))


def bernoulli_nll_grad(logits, x):
    """∂/∂logits of bernoulli_nll: sigmoid(logits) − x."""
    return sigmoid(logits) - x


def gaussian_kl(mu, logvar):
    """Elementwise KL(N(μ, e^v) ‖ N(0, 1)); mu, logvar (B, Z)."""
    return 0.5 * (mu * mu + np.exp(logvar) - 1 - logvar)


def gaussian_kl_grad(mu, logvar):
    """(∂KL/∂μ, ∂KL/∂v) elementwise."""
    return mu, 0.5 * (np.exp(logvar) - 1)
