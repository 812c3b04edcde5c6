"""The importance-weighted bound as a training objective, and its three gradient estimators.

With K samples per image, z_i = μ + σ ⊙ ε_i (ε_i ~ N(0, I), passed in as eps (K, B, Z)), and
the log weights (numpyvae/oracle/likelihood.py, `sample_log_weights`)
    s_i = log p(x|z_i) + log p(z_i) − log q(z_i|x),
the bound of Burda, Grosse & Salakhutdinov (2015, eq. 8) and the loss, summed over the batch:
    L_K = logsumexp_i s_i − log K,        loss = −Σ_b L_K(x_b)
    w̃ = softmax_i(s_i)                    (the normalised importance weights, per image)
With ĝ_i = ∇_z [log p(x|z) + log p(z)] at z_i (the decoder's and the prior's pull on z_i):
    decoder θ   ∂loss/∂θ = −Σ_i w̃_i ∇_θ log p(x|z_i)                        (all three)
    encoder, through μ and v = log σ² (∂z_i/∂μ = 1, ∂z_i/∂v = ½ σ ⊙ ε_i):
      standard  ∂loss/∂μ = −Σ_i w̃_i ĝ_i          ∂loss/∂v = −Σ_i w̃_i ĝ_i ⊙ ½σε_i − ½
                (∇L_K = Σ_i w̃_i ∇s_i, Burda et al. §3; log q(z_i|x) = −½ Σ (ε² + log 2π + v)
                moves with v alone once z_i is written through ε_i)
      stl       ∂loss/∂μ = −Σ_i w̃_i (ĝ_i + ε_i/σ)   ∂loss/∂v = −Σ_i w̃_i (ĝ_i + ε_i/σ) ⊙ ½σε_i
                ("sticking the landing", Roeder, Wu & Duvenaud 2017: log q's direct
                dependence on μ, σ dropped; its path through z kept: ∇_z log q(z) = −ε/σ;
                unbiased at K = 1 only, less noisy)
      dreg      as stl with w̃_i² for w̃_i (doubly reparameterised, Tucker et al. 2019;
                unbiased for every K)
At K = 1 (w̃ = 1) `standard` is the ELBO with a Monte-Carlo KL, and `dreg` equals `stl`.
docs/derivation.md derives each line. Numerically: the softmax is taken as e^{s − max s} over
its sum, in float64, as the log weights are.
"""
import numpy as np

from .loss import bernoulli_nll_grad
from .likelihood import sample_log_weights
from .network import decoder_backward, encoder_backward, sample_and_decode

OBJECTIVES = ("elbo", "iwae")        # elbo: numpyvae/oracle/network.py's, the default
ESTIMATORS = ("standard", "stl", "dreg")


def check_estimator(estimator):
    """`estimator` when it is one of ESTIMATORS, else a ValueError naming them."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    return estimator


def check_objective(objective, estimator=None):
    """(objective, estimator) when they go together — an estimator belongs to "iwae" alone,
    whose default is "standard" — else a ValueError saying what does."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if objective == "elbo":
        if estimator is not None:
            raise ValueError(f"estimator {estimator!r} is an estimator of the iwae objective's "
                             f"gradient; the elbo objective has none")
        return objective, None
    return objective, check_estimator("standard" if estimator is None else estimator)


def forward(params, x, eps, activation="leaky_relu"):
    """−L_K of a batch, summed over its images, in nats.

    x: (B, D) in [0, 1];  eps: (B, Z) or (K, B, Z);  activation: a name in ACTIVATIONS.
    Returns (loss, cache); cache holds the intermediates, the log weights `s` (K, B) and the
    normalised weights `weights` (K, B), both float64."""
    cache = sample_and_decode(params, x, eps, activation)
    eps, z = cache["eps"], cache["z"]                   # (K, B, Z)
    K, B, _ = eps.shape
    s = sample_log_weights(cache["logits"].reshape(K, B, -1), x, z, eps,
                           cache["logvar"])             # (K, B) float64
    # L_K = m + log Σ_i e^{s_i − m} − log K, m = max_i s_i;  w̃_i = e^{s_i − m} / Σ_j e^{s_j − m}
    m = s.max(axis=0)                                   # (B,)
    e = np.exp(s - m)                                   # (K, B)
    total = e.sum(axis=0)                               # (B,)
    bound = m + np.log(total) - np.log(K)               # (B,)
    cache.update(s=s, weights=e / total)
    return float(-bound.sum()), cache


def backward(params, cache, grads, estimator="standard"):
    """Every gradient of forward's loss by `estimator` (ESTIMATORS), written into `grads`."""
    check_estimator(estimator)
    x, eps, sigma, z = (cache[k] for k in ("x", "eps", "sigma", "z"))
    K, B, Z = eps.shape
    D = x.shape[1]
    w = cache["weights"].astype(x.dtype)[..., None]                          # (K, B, 1)
    # −Σ_i w̃_i log p(x|z_i):  ∂/∂ℓ_i = w̃_i (sigmoid(ℓ_i) − x)
    dlogits = bernoulli_nll_grad(cache["logits"].reshape(K, B, D), x)        # (K, B, D)
    dlogits *= w
    dz = decoder_backward(params, cache, dlogits.reshape(K * B, D), grads)   # (K·B, Z)
    dz = dz.reshape(K, B, Z)                                                 # (K, B, Z)
    # −w̃_i ∇_z log p(z_i) = w̃_i z_i;  now dz_i = −w̃_i ĝ_i
    dz += w * z
    if estimator == "standard":
        dmu = dz.sum(axis=0)                                                 # (B, Z)
        dlogvar = (dz * eps).sum(axis=0) * (0.5 * sigma) - 0.5               # (B, Z)
    else:
        # the path gradient −c_i (ĝ_i + ε_i/σ), c = w̃ (stl) or w̃² (dreg)
        path = dz if estimator == "stl" else dz * w                          # (K, B, Z)
        c = w if estimator == "stl" else w * w                               # (K, B, 1)
        path = path - c * eps / sigma                                        # (K, B, Z)
        dmu = path.sum(axis=0)                                               # (B, Z)
        dlogvar = (path * eps).sum(axis=0) * (0.5 * sigma)                   # (B, Z)
    encoder_backward(params, cache, dmu, dlogvar, grads)
    return grads
