"""The source notebook's VAE: forward pass, −ELBO, and every gradient by hand.

    encoder   h1 = f(x W_enc1ᵀ + b)            x: (B, D)       h1: (B, H)
              h2 = f(h1 W_enc2ᵀ + b)                           h2: (B, H)
              μ  = h2 W_meanᵀ + b,   v = log σ² = h2 W_stdᵀ + b     (B, Z)
    sample    z  = μ + exp(½ v) ⊙ ε,   ε ~ N(0, I)   (reparameterization, K&W 2014 §2.4)
                                                       ε: (L, B, Z) for L samples per image
    decoder   g1 = f(z W_dec1ᵀ + b),  g2 = f(g1 W_dec2ᵀ + b)                 (L·B, H)
              ℓ  = g2 W_outputᵀ + b,   θ = sigmoid(ℓ)                         (L·B, D)
    loss      −ELBO summed over the batch = 1/L Σ_l Σ_b BCE(x_b, ℓ_lb) + Σ_b KL(q(z|x_b) ‖ N(0, I))

f is the hidden activation: LeakyReLU(0.2) (the notebook's, default) or tanh (Burda et al.
2015); numpyvae/oracle/activations.py.

Parameters are named and shaped exactly as the notebook's `Model.state_dict()` (PyTorch's
(out, in) layout), and live as views into one flat buffer (`views`) so that Adam updates them
in a single pass and a checkpoint is one array. These functions are the readable oracle: the
numba path (numpyvae/fast/fused.py) computes the same numbers, and numpyvae.model.VAE, the
object a user holds, chooses between the two.
"""
import numpy as np

from . import linear
from .activations import ACTIVATIONS
from .loss import bernoulli_nll, bernoulli_nll_grad, gaussian_kl, gaussian_kl_grad

# (name prefix, fan_in attribute, fan_out attribute) in state_dict order.
LAYERS = (
    ("Encoder.FC_enc1", "x_dim", "hidden_dim"),
    ("Encoder.FC_enc2", "hidden_dim", "hidden_dim"),
    ("Encoder.FC_mean", "hidden_dim", "latent_dim"),
    ("Encoder.FC_std", "hidden_dim", "latent_dim"),      # outputs log σ², despite the name
    ("Decoder.FC_dec1", "latent_dim", "hidden_dim"),
    ("Decoder.FC_dec2", "hidden_dim", "hidden_dim"),
    ("Decoder.FC_output", "hidden_dim", "x_dim"),
)


INITS = {"torch": linear.init, "glorot": linear.init_glorot}


def param_shapes(x_dim, hidden_dim, latent_dim):
    """Ordered {state_dict name: shape} of the 14 parameter arrays."""
    dims = {"x_dim": x_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim}
    shapes = {}
    for prefix, fan_in, fan_out in LAYERS:
        shapes[prefix + ".weight"] = (dims[fan_out], dims[fan_in])
        shapes[prefix + ".bias"] = (dims[fan_out],)
    return shapes


def views(flat, shapes):
    """Split a flat buffer into named views with the given shapes (no copies)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    if start != flat.size:
        raise ValueError(f"flat buffer holds {flat.size} numbers, the shapes need {start}")
    return out


def as_eps3(eps, batch, latent_dim, dtype):
    """Noise as (L, B, Z); a (B, Z) array is one sample."""
    eps = np.asarray(eps, dtype=dtype)
    if eps.ndim == 2:
        eps = eps[None]                                  # (1, B, Z)
    if eps.ndim != 3 or eps.shape[1:] != (batch, latent_dim):
        raise ValueError(f"eps must have shape (B, Z) = ({batch}, {latent_dim}) or "
                         f"(L, {batch}, {latent_dim}); got {eps.shape}")
    return eps


def encode(params, x, activation="leaky_relu"):
    """μ and log σ² of q(z|x), plus the encoder activations.  x: (B, D)."""
    p, f = params, ACTIVATIONS[activation][0]
    a1 = linear.forward(x, p["Encoder.FC_enc1.weight"], p["Encoder.FC_enc1.bias"])   # (B, H)
    h1 = f(a1)                                                                       # (B, H)
    a2 = linear.forward(h1, p["Encoder.FC_enc2.weight"], p["Encoder.FC_enc2.bias"])  # (B, H)
    h2 = f(a2)                                                                       # (B, H)
    mu = linear.forward(h2, p["Encoder.FC_mean.weight"], p["Encoder.FC_mean.bias"])  # (B, Z)
    logvar = linear.forward(h2, p["Encoder.FC_std.weight"], p["Encoder.FC_std.bias"])  # (B, Z)
    return mu, logvar, (a1, h1, a2, h2)


def decode_logits(params, z, activation="leaky_relu"):
    """Decoder logits ℓ for latent codes z: (N, Z) -> (N, D), plus the activations."""
    p, f = params, ACTIVATIONS[activation][0]
    c1 = linear.forward(z, p["Decoder.FC_dec1.weight"], p["Decoder.FC_dec1.bias"])   # (N, H)
    g1 = f(c1)                                                                       # (N, H)
    c2 = linear.forward(g1, p["Decoder.FC_dec2.weight"], p["Decoder.FC_dec2.bias"])  # (N, H)
    g2 = f(c2)                                                                       # (N, H)
    logits = linear.forward(g2, p["Decoder.FC_output.weight"], p["Decoder.FC_output.bias"])  # (N, D)
    return logits, (c1, g1, c2, g2)


def sample_and_decode(params, x, eps, activation="leaky_relu"):
    """Encode x, draw z = μ + σ ε for every sample of eps, decode every z: the intermediates
    both objectives start from (this forward's and the bound's, numpyvae/oracle/iwae.py), as
    the cache decoder_backward and encoder_backward read.

    x: (B, D);  eps: (B, Z) or (L, B, Z).  Returns {x, eps (L, B, Z), mu, logvar, sigma (B, Z),
    z (L, B, Z), logits (L·B, D), enc, dec (the activations), activation}."""
    B = x.shape[0]
    mu, logvar, enc = encode(params, x, activation)     # (B, Z), (B, Z)
    eps = as_eps3(eps, B, mu.shape[1], mu.dtype)        # (L, B, Z)
    L, _, Z = eps.shape
    sigma = np.exp(0.5 * logvar)                        # (B, Z)
    z = mu + sigma * eps                                # (L, B, Z)
    logits, dec = decode_logits(params, z.reshape(L * B, Z), activation)   # (L·B, D)
    return dict(x=x, eps=eps, mu=mu, logvar=logvar, sigma=sigma, z=z, logits=logits,
                enc=enc, dec=dec, activation=activation)


def forward(params, x, eps, activation="leaky_relu"):
    """−ELBO of a batch, summed over its images, in nats.

    x: (B, D) in [0, 1];  eps: (B, Z) or (L, B, Z);  activation: a name in ACTIVATIONS.
    Returns (loss, cache); cache holds the intermediates (μ, log σ², z, logits, …) and the
    two parts of the loss, `recon` and `kl`, also summed over the batch.
    """
    cache = sample_and_decode(params, x, eps, activation)
    L, B, _ = cache["eps"].shape
    logits3 = cache["logits"].reshape(L, B, -1)         # (L, B, D)
    # Monte-Carlo estimate of E_q[−log p(x|z)]: 1/L Σ_l (K&W 2014, eq. 7); KL analytic (App. B).
    recon = bernoulli_nll(logits3, x).sum() / L
    kl = gaussian_kl(cache["mu"], cache["logvar"]).sum()
    loss = recon + kl
    cache.update(recon=float(recon), kl=float(kl))
    return float(loss), cache


def backward(params, cache, grads):
    """Every gradient of forward's loss, written into `grads` (dict keyed like params)."""
    x, eps, mu, logvar, sigma = (cache[k] for k in ("x", "eps", "mu", "logvar", "sigma"))
    L, B, Z = eps.shape
    D = x.shape[1]
    # reconstruction term, 1/L Σ_l BCE(x, ℓ_l):  ∂/∂ℓ = (sigmoid(ℓ) − x) / L
    dlogits = bernoulli_nll_grad(cache["logits"].reshape(L, B, D), x)        # (L, B, D)
    if L > 1:
        dlogits *= dlogits.dtype.type(1.0 / L)
    dz = decoder_backward(params, cache, dlogits.reshape(L * B, D), grads)   # (L·B, Z)
    dz = dz.reshape(L, B, Z)                                                 # (L, B, Z)
    # reparameterization z = μ + exp(½v) ε:  ∂z/∂μ = 1,  ∂z/∂v = ½ σ ε;  plus the KL's own terms
    dkl_dmu, dkl_dlogvar = gaussian_kl_grad(mu, logvar)                      # (B, Z)
    dmu = dz.sum(axis=0) + dkl_dmu                                           # (B, Z)
    dlogvar = (dz * eps).sum(axis=0) * (0.5 * sigma) + dkl_dlogvar           # (B, Z)
    encoder_backward(params, cache, dmu, dlogvar, grads)
    return grads


def decoder_backward(params, cache, dlogits, grads):
    """The decoder's gradients from dℓ (N, D), N = L·B rows, written into `grads`; returns
    dz (N, Z), the gradient at its input z."""
    p, g, df = params, grads, ACTIVATIONS[cache["activation"]][1]
    c1, g1, c2, g2 = cache["dec"]
    z = cache["z"]
    dg2 = linear.backward(dlogits, g2, p["Decoder.FC_output.weight"],
                          g["Decoder.FC_output.weight"], g["Decoder.FC_output.bias"])   # (N, H)
    dc2 = df(dg2, c2, g2)                                                               # (N, H)
    dg1 = linear.backward(dc2, g1, p["Decoder.FC_dec2.weight"],
                          g["Decoder.FC_dec2.weight"], g["Decoder.FC_dec2.bias"])       # (N, H)
    dc1 = df(dg1, c1, g1)                                                               # (N, H)
    return linear.backward(dc1, z.reshape(-1, z.shape[-1]), p["Decoder.FC_dec1.weight"],
                           g["Decoder.FC_dec1.weight"], g["Decoder.FC_dec1.bias"])      # (N, Z)


def encoder_backward(params, cache, dmu, dlogvar, grads):
    """The encoder's gradients from dμ and d(log σ²), each (B, Z), written into `grads`."""
    p, g, df = params, grads, ACTIVATIONS[cache["activation"]][1]
    a1, h1, a2, h2 = cache["enc"]
    dh2 = linear.backward(dmu, h2, p["Encoder.FC_mean.weight"],
                          g["Encoder.FC_mean.weight"], g["Encoder.FC_mean.bias"])       # (B, H)
    dh2 += linear.backward(dlogvar, h2, p["Encoder.FC_std.weight"],
                           g["Encoder.FC_std.weight"], g["Encoder.FC_std.bias"])        # (B, H)
    da2 = df(dh2, a2, h2)                                                               # (B, H)
    dh1 = linear.backward(da2, h1, p["Encoder.FC_enc2.weight"],
                          g["Encoder.FC_enc2.weight"], g["Encoder.FC_enc2.bias"])       # (B, H)
    da1 = df(dh1, a1, h1)                                                               # (B, H)
    linear.backward(da1, cache["x"], p["Encoder.FC_enc1.weight"],
                    g["Encoder.FC_enc1.weight"], g["Encoder.FC_enc1.bias"], need_dx=False)
