"""A model's per-image −ELBO and its importance-weighted estimate of log p(x).

ELBO (Kingma & Welling 2014, eq. 3), per image, one ε ~ N(0, I):
    −ELBO(x) = BCE(x, ℓ(z)) + KL(q(z|x) ‖ N(0, I)),   z = μ + σ ε

L_k = logsumexp_i s_i − log k (Burda, Grosse & Salakhutdinov 2015, eq. 8), with the log weights
s_i of numpyvae/oracle/likelihood.py (the formulas) or of the numba path: the k samples are
taken in chunks and combined with a running log-sum-exp, so memory stays bounded for k = 5000.
Active units are the oracle's (`active_units`, named here too).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import backend as backends
from .oracle.likelihood import LOG_2PI, ROWS, active_units
from .oracle.loss import bernoulli_nll, gaussian_kl

__all__ = ["neg_elbo_per_image", "log_likelihood", "active_units", "LOG_2PI", "ROWS"]


def neg_elbo_per_image(model, x, eps):
    """(recon, kl) per image, float64 arrays of shape (B,).  x: (B, D), eps: (B, Z)."""
    x = model.as_input(x)
    mu, logvar = model.encode(x)                                   # (B, Z)
    z = mu + np.exp(0.5 * logvar) * eps.astype(model.dtype, copy=False)    # (B, Z)
    logits = model.decode_logits(z)                                # (B, D)
    recon = bernoulli_nll(logits, x).sum(axis=1, dtype=np.float64)    # (B,)
    kl = gaussian_kl(mu, logvar).sum(axis=1, dtype=np.float64)       # (B,)
    return recon, kl


def log_likelihood(model, x, k, rng, rows=None, workers=1):
    """Importance-weighted estimate L_k of log p(x) per image, float64 (B,).

    x: (B, D); k samples per image from `rng` (a numpy Generator), decoded `rows` at a time
    (samples × images per decoder call; None: the backend's, backend.likelihood_rows),
    combined with a running log-sum-exp. A thread of its own draws each chunk's ε while the
    one before is weighed; the draws, and rng's state when it returns, are those of a plain
    loop (an exception leaves rng a chunk further on).
    The weights come from the model's backend (numpyvae/backend.py): the oracle's
    (numpyvae/oracle/likelihood.py, `log_weights`), or with numba fused.LogWeights (the
    decoder's bias+activation and the per-row Bernoulli sum fused, on `workers` threads — the
    same bits with any number), from the same draws.
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
