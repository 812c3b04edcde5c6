"""Per-image −ELBO and the importance-weighted estimate of log p(x).

ELBO (Kingma & Welling 2014, eq. 3), per image, one ε ~ N(0, I):
    −ELBO(x) = BCE(x, ℓ(z)) + KL(q(z|x) ‖ N(0, I)),   z = μ + σ ε

Importance-weighted bound (Burda, Grosse & Salakhutdinov 2015, eq. 8), k samples z_i ~ q(z|x):
    log p(x) ≥ L_k = log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x)
               = logsumexp_i w_i − log k,   w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x)
    log p(z)   = −½ Σ_j (z_j² + log 2π)
    log q(z|x) = −½ Σ_j (ε_j² + log 2π + log σ_j²)        (z = μ + σ ε)
L_1 is the ELBO estimator; L_k rises with k towards log p(x) (Burda et al., Thm. 1).
The k samples are taken in chunks and combined with a running log-sum-exp, so memory stays
bounded for k = 5000.

Active units (Burda et al. 2015, §5.2): latent unit u is active when A_u = Cov_x(E_q[z_u|x]),
the variance over the data of its posterior mean μ_u(x), exceeds 10⁻².
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import backend as backends
from .loss import bernoulli_nll, gaussian_kl

LOG_2PI = np.log(2 * np.pi)


def neg_elbo_per_image(model, x, eps):
    """(recon, kl) per image, float64 arrays of shape (B,).  x: (B, D), eps: (B, Z)."""
    x = model.as_input(x)
    mu, logvar = model.encode(x)                                   # (B, Z)
    z = mu + np.exp(0.5 * logvar) * eps.astype(model.dtype, copy=False)    # (B, Z)
    logits = model.decode_logits(z)                                # (B, D)
    recon = bernoulli_nll(logits, x).sum(axis=1, dtype=np.float64)    # (B,)
    kl = gaussian_kl(mu, logvar).sum(axis=1, dtype=np.float64)       # (B,)
    return recon, kl


def log_weights(model, x, eps):
    """w = log p(x|z) + log p(z) − log q(z|x) for each sample.  eps: (S, B, Z) -> (S, B)."""
    mu, logvar = model.encode(x)                                   # (B, Z)
    S, B, Z = eps.shape
    z = mu + np.exp(0.5 * logvar) * eps                            # (S, B, Z)
    logits = model.decode_logits(z.reshape(S * B, Z)).reshape(S, B, -1)   # (S, B, D)
    log_px_z = -bernoulli_nll(logits, x).sum(axis=2, dtype=np.float64)   # (S, B)
    log_pz = -0.5 * (np.square(z, dtype=np.float64).sum(axis=2) + Z * LOG_2PI)    # (S, B)
    log_qz = -0.5 * (np.square(eps, dtype=np.float64).sum(axis=2) + Z * LOG_2PI
                     + logvar.sum(axis=1, dtype=np.float64))                  # (S, B)
    return log_px_z + log_pz - log_qz


# samples × images per decoder call of the NumPy path: 5000 rows of 784 logits are 16 MB in
# float32, and bernoulli_nll's float64 temporaries over them 31 MB each
ROWS = 5000


def log_likelihood(model, x, k, rng, rows=None, workers=1):
    """Importance-weighted estimate L_k of log p(x) per image, float64 (B,).

    x: (B, D); k samples per image from `rng` (a numpy Generator), decoded `rows` at a time
    (samples × images per decoder call; None: the backend's, backend.likelihood_rows),
    combined with a running log-sum-exp. A thread of its own draws each chunk's ε while the
    one before is weighed; the draws, and rng's state when it returns, are those of a plain
    loop (an exception leaves rng a chunk further on).
    The weights come from the model's backend (numpyvae/backend.py): `log_weights` below, or
    with numba fused.LogWeights (the decoder's bias+activation and the per-row Bernoulli sum
    fused, on `workers` threads — the same bits with any number), from the same draws.
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    x = model.as_input(x)
    rows = backends.likelihood_rows(model) if rows is None else rows
    B, Z = x.shape[0], model.latent_dim
    total = np.full(B, -np.inf)                                    # running logsumexp (B,)
    chunk = max(1, rows // B)
    weights = backends.log_weights(model, x, min(chunk, k) * B, workers)

    def draw(done):                                                # the next chunk's ε
        return rng.standard_normal((min(chunk, k - done), B, Z), dtype=model.dtype)
    # One thread draws chunk c + 1 while chunk c is weighed (NumPy releases Python's lock in
    # both); it alone touches rng, in order, so the draws are those of a plain loop.
    with ThreadPoolExecutor(max_workers=1) as drawer:
        upcoming, done = drawer.submit(draw, 0), 0
        while done < k:
            eps = upcoming.result()                                # (S, B, Z)
            done += len(eps)
            if done < k:
                upcoming = drawer.submit(draw, done)
            w = weights(model, x, eps)                             # (S, B)
            m = w.max(axis=0)                                      # (B,)
            total = np.logaddexp(total, m + np.log(np.exp(w - m).sum(axis=0)))
    return total - np.log(k)


def active_units(mu, threshold=1e-2):
    """(number of active units, A_u for each unit) from posterior means mu: (N, Z) over N images.
    A_u = Var_x μ_u(x), the population variance in float64 (Burda et al. 2015, §5.2)."""
    A = np.var(np.asarray(mu, np.float64), axis=0)                 # (Z,)
    return int((A > threshold).sum()), A
