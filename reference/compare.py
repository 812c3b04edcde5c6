"""How numpyvae is compared with the PyTorch reference, stated once: by the tests and by
`python -m reference.gradcheck`.

rel_err(ours, ref) = max |ours − ref| / max |ref| over one tensor (the llm.c measure): it
compares by parameter name and reports the worst element, so a bug in a single entry shows.
TOLERANCE: float64 1e-10 (both sides differ by ulps, ≈ 1e-15 measured); float32 1e-5 (≈ 170
roundoffs over reductions of ≤ 128·L rows; ≈ 7e-7 measured), away from LeakyReLU's kink.
"""
import numpy as np

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(ours - ref)) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def worst(ours, ref):
    """Index, ours and ref at the worst element — for failure messages."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    i = np.unravel_index(np.argmax(np.abs(ours - ref)), ref.shape) if ref.size else ()
    return i, (ours[i] if ref.size else None), (ref[i] if ref.size else None)


# ----------------------------------------------------------------------------------------------
# Float32 comparisons through LeakyReLU, and why they leave out a few images.
#
# LeakyReLU's derivative jumps at 0 (1 above, 0.2 below). A float32 pre-activation
# a = Σ_k h_k W_jk + b_j carries a rounding error of order u·s, u = 2⁻²⁴ the unit roundoff and
# s = Σ_k |h_k W_jk| + |b_j| the size of what was summed, and its sign (so the branch) is only
# as certain as that. Two correct float32 implementations — numpyvae and Torch, the numba path
# and the NumPy path, one OpenBLAS kernel and another — can therefore take different branches
# where |a| is within a few u·s of 0, and their gradients then differ by O(1) in whole rows:
# no tolerance separates that from a bug. So a float32 comparison through LeakyReLU is run on
# the batch *less the images that have a pre-activation within KINK_ROUNDOFFS·u·s of 0*, that
# decision made in float64 from the same float32 parameters, x and ε, so that it is the same on
# every BLAS kernel and for both sides. Every image left is one where any float32
# implementation takes the branches of the exact arithmetic; the tolerance stays what it was.
# The gradient is a sum over images, so the comparison on the rest is a full one.
# KINK_ROUNDOFFS = 32: the worst |a32 − a64| / (u·s) measured at 784-200-20, batch 128, is 6.8
# (numpyvae's NumPy path under OpenBLAS's Haswell and SkylakeX kernels; 4.2 Torch, 4.2 the
# generic kernel), so 32 is ≈ 5× that; it leaves out 1–3 images of 128.
U32 = 2.0 ** -24
KINK_ROUNDOFFS = 32


def kink_rows(params, x, eps, roundoffs=KINK_ROUNDOFFS):
    """(B,) bool: images with a LeakyReLU pre-activation, in any layer and any of the L samples,
    within `roundoffs`·u·s of 0, computed in float64 (plain NumPy, not numpyvae's code).

    params: {state_dict name: array}; x: (B, D); eps: (B, Z) or (L, B, Z)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    eps = np.asarray(eps, np.float64)
    eps = eps[None] if eps.ndim == 2 else eps                           # (L, B, Z)
    L, B, Z = eps.shape
    near = np.zeros((L, B), bool)

    def layer(h, name, kink):
        W, b = p[name + ".weight"], p[name + ".bias"]
        a = h @ W.T + b                                                 # (N, out)
        if kink:
            s = np.abs(h) @ np.abs(W).T + np.abs(b)                     # (N, out)
            hit = (np.abs(a) <= roundoffs * U32 * s).any(axis=1)        # (N,)
            near[...] |= hit.reshape(-1, B)                             # broadcast over L
            a = np.where(a > 0, a, 0.2 * a)
        return a

    h = layer(layer(x, "Encoder.FC_enc1", True), "Encoder.FC_enc2", True)          # (B, H)
    mu, logvar = layer(h, "Encoder.FC_mean", False), layer(h, "Encoder.FC_std", False)
    z = (mu + np.exp(0.5 * logvar) * eps).reshape(L * B, Z)                         # (L·B, Z)
    layer(layer(z, "Decoder.FC_dec1", True), "Decoder.FC_dec2", True)              # (L·B, H)
    return near.any(axis=0)


def away_from_kinks(params, x, eps):
    """(x, ε, how many images were left out): x and ε less the images kink_rows finds.
    eps: (B, Z) or (L, B, Z), returned in the same form."""
    keep = ~kink_rows(params, x, eps)
    return x[keep], (eps[keep] if np.ndim(eps) == 2 else eps[:, keep]), int((~keep).sum())
