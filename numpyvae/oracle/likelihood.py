"""The importance-weighted bound's log weights, and active units, in NumPy.

Importance-weighted bound (Burda, Grosse & Salakhutdinov 2015, eq. 8), k samples z_i ~ q(z|x):
    log p(x) ≥ L_k = log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)
               = logsumexp_i s_i − log k,   s_i = log p(x|z_i) + log p(z_i) − log q(z_i|x)
    log p(z)   = −½ Σ_j (z_j² + log 2π)
    log q(z|x) = −½ Σ_j (ε_j² + log 2π + log σ_j²)        (z = μ + σ ε)
L_1 is the ELBO estimator; L_k rises with k towards log p(x) (Burda et al., Thm. 1).
`log_weights` is the readable oracle of the s_i; the numba path's are fused.LogWeights
(numpyvae/fast/fused.py), and numpyvae.likelihood.log_likelihood combines either's chunks.

Active units (Burda et al. 2015, §5.2): latent unit u is active when A_u = Cov_x(E_q[z_u|x]),
the variance over the data of its posterior mean μ_u(x), exceeds 10⁻².
"""
import numpy as np

from .loss import bernoulli_nll
from .network import sample_and_decode

LOG_2PI = np.log(2 * np.pi)

# samples × images per decoder call of the NumPy path: 5000 rows of 784 logits are 16 MB in
# float32, and bernoulli_nll's float64 temporaries over them 31 MB each
ROWS = 5000


def log_weights(params, x, eps, activation="leaky_relu"):
    """w = log p(x|z) + log p(z) − log q(z|x) for each sample, float64.
    x: (B, D) of the parameters' dtype;  eps: (S, B, Z) -> (S, B)."""
    c = sample_and_decode(params, x, eps, activation)
    S, B, _ = eps.shape
    return sample_log_weights(c["logits"].reshape(S, B, -1), x, c["z"], eps, c["logvar"])


def sample_log_weights(logits, x, z, eps, logvar):
    """The log weights (S, B), float64, of samples z = μ + σ ε (S, B, Z) whose decoder logits
    are `logits` (S, B, D), for the images x (B, D) with log σ² = logvar (B, Z)."""
    Z = z.shape[2]
    log_px_z = -bernoulli_nll(logits, x).sum(axis=2, dtype=np.float64)   # (S, B)
    log_pz = -0.5 * (np.square(z, dtype=np.float64).sum(axis=2) + Z * LOG_2PI)    # (S, B)
    log_qz = -0.5 * (np.square(eps, dtype=np.float64).sum(axis=2) + Z * LOG_2PI
                     + logvar.sum(axis=1, dtype=np.float64))                  # (S, B)
    return log_px_z + log_pz - log_qz


def active_units(mu, threshold=1e-2):
    """(number of active units, A_u for each unit) from posterior means mu: (N, Z) over N images.
    A_u = Var_x μ_u(x), the population variance in float64 (Burda et al. 2015, §5.2)."""
    A = np.var(np.asarray(mu, np.float64), axis=0)                 # (Z,)
    return int((A > threshold).sum()), A
