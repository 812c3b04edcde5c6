"""Numba kernels that fuse the elementwise work around the matrix products of a step.

BLAS stays BLAS: every matrix product is `np.matmul(..., out=...)` in numpyvae/fast/fused.py.
These kernels do what lies between the products, in one pass each, writing into arrays
passed in (so a training step allocates nothing):

    transpose_into             out = aᵀ (BLAS's W aᵀ back to rows)    copy  (o, N) → (N, o)
    bias_leaky_relu            h ← lrelu(a + b)                       in place    (N, H)
    leaky_relu_backward_bias   d ← d ⊙ lrelu'(h),  db = Σ_rows d      in place    (N, H)
    bias_tanh[_f32]            h ← tanh(a + b)                        in place    (N, H)
    tanh_backward_bias         d ← d ⊙ (1 − h²),   db = Σ_rows d      in place    (N, H)
    reparameterize             μ, v ← μ + b_μ, v + b_v;  σ = e^{v/2};  z = μ + σ ε;  KL
    reparameterize_backward    dμ, dv, db_μ, db_v from dz and the KL's own gradient
    sample_log_ratio           z = μ + σ ε;  log p(z) − log q(z|x)   (the IWAE's, per row)
    bernoulli_logits[_f32]     ℓ = a + b;  Σ BCE(x, ℓ);  ℓ ← (sigmoid(ℓ) − x)/L;  db    (N, D)
    bernoulli_loglik_rows[_f32] out_i = −Σ_j BCE(x, a_ij + b_j)   (the IWAE's log p(x|z))
    iwae_weights               w̃ = softmax per image of log p(x|z) + log p(z) − log q(z|x); Σ L_K
    row_sums                   out_i = Σ_j a_ij in float64 (Σ log σ² per image)
    bernoulli_weighted_grad[_f32]  ℓ ← w̃_r (sigmoid(a + b) − x);  db             (N, D)
    iwae_reparameterize_backward   dμ, dv, db_μ, db_v by the standard, STL or DReG estimator
    adam_step                  torch.optim.Adam's update over one flat buffer
    gather_binarize            out = binarize(images[idx]) from uint8, modes threshold/dynamic/none

Each kernel is plain Python here and is jitted once, at the bottom of this file, so
`kernel.py_func` is the un-jitted version the tests compare against. No `fastmath`: results
must match the NumPy oracle and PyTorch. One exception: the float32 log-likelihood kernel, which
only evaluation runs, may contract a·b + c into one fused multiply-add ({"contract"}, nothing
else): its polynomials are chains of them, and it runs 20–30% faster (Zen 3, AVX2); each FMA
rounds once instead of twice, so its terms move by an ulp at most, within the float32
kernels' tolerance. Training's kernels keep every rounding, so a run's numbers do not move.
`error_model="numpy"` drops Python's zero-division check, without which LLVM will not vectorize
a loop that divides.

Why there are `_f32` variants: glibc's scalar expf/log1pf/tanhf cannot be vectorized (numba has
no SVML here) and cost 4–5 ns each, more than the matrix products around them. For float32 the
`_f32` kernels use the polynomials below in float32 arithmetic, which LLVM vectorizes; their
error is ≤ a few float32 ulps (checked in tests/math/test_kernels.py). float64 uses libm through
the generic kernels, so both backends agree to ~1e-15 there.

Deterministic by construction: every kernel is single-threaded and every reduction runs in
a fixed order (column sums add rows in order; loss sums are accumulated in float64).
Threads were tried for Adam: numba's OpenMP workers spin after a parallel region and fight
OpenBLAS's two threads for the two cores, which made the whole step several times slower.
Every kernel releases Python's lock while it runs (`nogil`), so that fused.LogWeights' workers,
plain Python threads, run them side by side on separate rows.
"""
import logging
import math
import signal
import threading
import types

import numpy as np
from numba import njit
from numba.core import event as numba_event

# ---------------------------------------------------------------------------------------------
# float32 exp(−t) and log1p(e), vectorizable (plain arithmetic and bit operations)

# exp(−t) = e^r · 2^(−k),  k = round(t / ln 2),  r = k ln 2 − t ∈ [−ln2/2, ln2/2]  (Cody–Waite:
# ln 2 = LN2_HI + LN2_LO with LN2_HI exact in 9 bits, so k·LN2_HI is exact for k < 2^15).
F32_INV_LN2 = np.float32(1.4426950408889634)
F32_LN2_HI = np.float32(0.693359375)
F32_LN2_LO = np.float32(-2.12194440e-4)
F32_HALF = np.float32(0.5)
F32_ONE = np.float32(1.0)
F32_TWO = np.float32(2.0)
F32_ZERO = np.float32(0.0)
# t is clamped here so e^(−t) stays a normal float32 (e^(−87) ≈ 1.6e-38); beyond it the
# value only enters as log1p(e) ≈ e ≈ 0 or sigmoid ≈ e ≈ 0, both far below one ulp of the sums.
F32_T_MAX = np.float32(87.0)
# Taylor coefficients of e^r to degree 7: the remainder r⁸/8! ≤ 5.2e-9 < float32 ulp/2 at 1.
F32_EXP_C = tuple(np.float32(1.0 / math.factorial(n)) for n in range(8))
# log1p(e) = 2 atanh(s) = 2s Σ_n s^(2n)/(2n+1), s = e/(2+e) ∈ (0, 1/3] for e ∈ (0, 1];
# seven terms leave (1/9)^7/15 ≤ 1.4e-8 relative.
F32_LOG1P_C = tuple(np.float32(1.0 / (2 * n + 1)) for n in range(7))


def exp_neg_f32(t):
    """e^(−t) for float32 t ≥ 0 (NaN gives e^(−87): callers propagate NaN themselves)."""
    t = t if t < F32_T_MAX else F32_T_MAX
    i = np.int32(t * F32_INV_LN2 + F32_HALF)                 # round(t / ln2), 0 … 126
    k = np.float32(i)
    r = (k * F32_LN2_HI - t) + k * F32_LN2_LO                # k ln2 − t
    c = F32_EXP_C
    p = c[7]
    p = p * r + c[6]
    p = p * r + c[5]
    p = p * r + c[4]
    p = p * r + c[3]
    p = p * r + c[2]
    p = p * r + c[1]
    p = p * r + c[0]
    return p * np.int32((127 - i) << 23).view(np.float32)      # 2^(−i): biased exponent 127 − i


def log1p_f32(e):
    """log(1 + e) for float32 e ∈ [0, 1], accurate to a few ulps (relative)."""
    s = e / (F32_TWO + e)
    s2 = s * s
    c = F32_LOG1P_C
    p = c[6]
    p = p * s2 + c[5]
    p = p * s2 + c[4]
    p = p * s2 + c[3]
    p = p * s2 + c[2]
    p = p * s2 + c[1]
    p = p * s2 + c[0]
    return F32_TWO * s * p


# tanh(a) for |a| < F32_TANH_SMALL: its Taylor series a Σ_n c_n a^(2n), c_n from the Bernoulli
# numbers (1, −1/3, 2/15, −17/315, 62/2835, −1382/155925); at |a| = 0.3 the next term,
# 21844/6081075 · 0.3^12 ≈ 1.9e-9, is far below float32's ulp/2 relative (6e-8).
# Beyond it: (1 − e)/(1 + e) with e = e^(−2|a|) ≤ e^(−0.6), where 1 − e ≥ 0.45 cancels nothing.
F32_TANH_SMALL = np.float32(0.3)
F32_TANH_C = tuple(np.float32(c) for c in (1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835,
                                           -1382.0 / 155925))


def tanh_f32(a):
    """tanh(a) for float32 a, a few ulps from libm's, vectorizable; NaN stays NaN."""
    t = abs(a)
    t2 = a * a
    c = F32_TANH_C
    p = c[5]
    p = p * t2 + c[4]
    p = p * t2 + c[3]
    p = p * t2 + c[2]
    p = p * t2 + c[1]
    p = p * t2 + c[0]
    small = a * p
    e = exp_neg_f32(t + t)
    big = (F32_ONE - e) / (F32_ONE + e)
    big = big if a > F32_ZERO else -big
    y = small if t < F32_TANH_SMALL else big
    return y if a == a else a


# ---------------------------------------------------------------------------------------------
# Linear layers: a product's transposed copy, the bias, the hidden activation (LeakyReLU, tanh)

def transpose_into(a, out):
    """out ← aᵀ.  a: (R, C), out: (C, R). A copy: the same bits.

    Reads a row by row and writes out column by column (a 16 × 784 a: 4 µs, Zen 4)."""
    R, C = a.shape
    if out.shape[0] != C or out.shape[1] != R:
        raise ValueError("transpose_into: out must be (C, R) for a of (R, C)")
    for i in range(R):
        for j in range(C):
            out[j, i] = a[i, j]


def bias_leaky_relu(a, b, slope):
    """a ← lrelu(a + b) in place.  a: (N, H) = x Wᵀ from BLAS, b: (H,), slope: a's dtype.

    The backward only needs the sign of the input, and lrelu(a) > 0 ⟺ a > 0 (slope > 0),
    so the output alone is kept."""
    N, H = a.shape
    for i in range(N):
        for j in range(H):
            v = a[i, j] + b[j]
            a[i, j] = v if v > 0 else v * slope


def leaky_relu_backward_bias(d, h, slope, db):
    """d ← d ⊙ lrelu'(·) in place, given the layer's output h; db = Σ_rows d (the bias grad).

    d, h: (N, H); db: (H,). lrelu' is 1 where h > 0, else slope (Torch's choice at 0).
    d is multiplied by the one or the other (d · 1 = d exactly, −0 and NaN too; only a
    signalling NaN, which arithmetic never makes, comes out quiet): written as
    "d, or d · slope", LLVM stores only the changed entries, with AVX's masked stores, which
    took this pass from 0.3 to 1–1.6 ns an entry (Zen 3)."""
    N, H = d.shape
    for j in range(H):
        db[j] = 0
    for i in range(N):
        for j in range(H):
            v = d[i, j] * (F32_ONE if h[i, j] > 0 else slope)
            d[i, j] = v
            db[j] += v


def bias_tanh(a, b):
    """a ← tanh(a + b) in place (libm).  a: (N, H) = x Wᵀ from BLAS, b: (H,).
    tanh' = 1 − tanh², so the backward needs the output alone, which is what is kept."""
    N, H = a.shape
    for i in range(N):
        for j in range(H):
            a[i, j] = np.tanh(a[i, j] + b[j])


def bias_tanh_f32(a, b):
    """bias_tanh for float32, with the vectorizable tanh_f32."""
    N, H = a.shape
    for i in range(N):
        for j in range(H):
            a[i, j] = tanh_f32(a[i, j] + b[j])


def tanh_backward_bias(d, h, db):
    """d ← d ⊙ (1 − h²) in place, given the layer's output h = tanh(·); db = Σ_rows d.

    d, h: (N, H); db: (H,). (The 1 is F32_ONE, exact in either dtype: an integer 1 would make
    numba compute a float32 row in float64.)"""
    N, H = d.shape
    for j in range(H):
        db[j] = 0
    for i in range(N):
        for j in range(H):
            v = d[i, j] * (F32_ONE - h[i, j] * h[i, j])
            d[i, j] = v
            db[j] += v


# ---------------------------------------------------------------------------------------------
# Reparameterization and the Gaussian KL (Kingma & Welling 2014, §2.4 and App. B)

def reparameterize(mu, b_mu, logvar, b_logvar, eps, sigma, z):
    """μ += b_μ, v += b_v (in place); σ = e^{v/2}; z[l] = μ + σ ε[l]; returns Σ KL (float64).

    mu, logvar, sigma: (B, Z); eps, z: (L, B, Z).
    KL = ½ Σ (μ² + e^v − 1 − v)."""
    L, B, Z = eps.shape
    kl = 0.0
    for i in range(B):
        for j in range(Z):
            m = mu[i, j] + b_mu[j]
            v = logvar[i, j] + b_logvar[j]
            mu[i, j] = m
            logvar[i, j] = v
            s = np.exp(v * 0.5)
            sigma[i, j] = s
            mf, vf = np.float64(m), np.float64(v)
            kl += 0.5 * (mf * mf + np.exp(vf) - 1.0 - vf)
    for l in range(L):
        for i in range(B):
            for j in range(Z):
                z[l, i, j] = mu[i, j] + sigma[i, j] * eps[l, i, j]
    return kl


def reparameterize_backward(dz, eps, mu, logvar, sigma, dmu, dlogvar, db_mu, db_logvar):
    """Gradients at μ and v = log σ² of the reconstruction (through z) plus the KL.

    z = μ + e^{v/2} ε:  ∂z/∂μ = 1, ∂z/∂v = ½ σ ε;   ∂KL/∂μ = μ, ∂KL/∂v = ½ (e^v − 1).
    dz, eps: (L, B, Z); the rest (B, Z); db_*: (Z,) = Σ_b of dμ, dv (the biases' gradients)."""
    L, B, Z = eps.shape
    for j in range(Z):
        db_mu[j] = 0
        db_logvar[j] = 0
    for i in range(B):
        for j in range(Z):
            g_mu = dz[0, i, j]
            g_ze = dz[0, i, j] * eps[0, i, j]
            for l in range(1, L):
                g_mu += dz[l, i, j]
                g_ze += dz[l, i, j] * eps[l, i, j]
            dm = g_mu + mu[i, j]
            dv = g_ze * (sigma[i, j] * 0.5) + 0.5 * (np.exp(logvar[i, j]) - 1.0)
            dmu[i, j] = dm
            dlogvar[i, j] = dv
            db_mu[j] += dmu[i, j]
            db_logvar[j] += dlogvar[i, j]


def sample_log_ratio(mu, sigma, sum_logvar, eps, first, z, out):
    """z[r] = μ_i + σ_i ε[r] and out[r] = log p(z_r) − log q(z_r|x_i), float64, with
    i = (first + r) % B: the rows are decoder rows first, first + 1, … of samples × images
    (the importance sampler's, numpyvae/oracle/likelihood.py).

    mu, sigma: (B, Z); sum_logvar: (B,) float64 Σ_j log σ_j²; eps, z: (N, Z); out: (N,).
    log p(z) − log q(z|x) = −½ Σ_j (z_j² − ε_j² − log σ_j²)   (the log 2π terms cancel)."""
    N, Z = eps.shape
    B = mu.shape[0]
    for r in range(N):
        i = (first + r) % B
        acc = 0.0
        for j in range(Z):
            e = eps[r, j]
            v = mu[i, j] + sigma[i, j] * e
            z[r, j] = v
            vf, ef = np.float64(v), np.float64(e)
            acc += vf * vf - ef * ef
        out[r] = -0.5 * (acc - sum_logvar[i])


# ---------------------------------------------------------------------------------------------
# Bernoulli likelihood from logits (see numpyvae/oracle/loss.py for the derivation)
#   BCE(x, ℓ) = max(ℓ, 0) − x ℓ + log1p(e^{−|ℓ|}),   ∂/∂ℓ = sigmoid(ℓ) − x
#   sigmoid(ℓ) = 1/(1+e) for ℓ ≥ 0, e/(1+e) for ℓ < 0,   e = e^{−|ℓ|}

def bernoulli_logits(logits, b, x, scale, db, colsum, row):
    """Bias, loss and gradient of the reconstruction term in one pass (libm exp/log1p).

    logits: (N, D) = g2 W_outᵀ from BLAS, N = L·B, row r belonging to image r % B;
    b: (D,); x: (B, D). In place: logits ← dℓ = (sigmoid(ℓ) − x)·scale (scale = 1/L).
    db ← Σ_rows dℓ (the output bias's gradient). Returns Σ BCE over all N·D entries: each
    row's terms go to `row` (D,) scratch, are added per column into colsum (D,) float64,
    and the columns are summed last — a fixed order, so the same bits every run."""
    N, D = logits.shape
    B = x.shape[0]
    for j in range(D):
        colsum[j] = 0.0
        db[j] = 0
    for r in range(N):
        i = r % B
        for j in range(D):
            a = logits[r, j] + b[j]
            af, xf = np.float64(a), np.float64(x[i, j])
            e = np.exp(-abs(af))
            row[j] = (af if af > 0 else 0.0) - xf * af + np.log1p(e)
            q = 1.0 / (1.0 + e)
            s = q if af >= 0 else e * q
            g = (s - xf) * scale
            logits[r, j] = g
            db[j] += logits[r, j]
        for j in range(D):
            colsum[j] += row[j]
    total = 0.0
    for j in range(D):
        total += colsum[j]
    return total


def bernoulli_logits_f32(logits, b, x, scale, db, colsum, row):
    """bernoulli_logits for float32, with the vectorizable exp_neg_f32 / log1p_f32.

    Same arguments (scale a float32, row float32). Each term is formed in float32, as NumPy
    and Torch do in float32; the per-column sums are float64. (Accumulating float64 inside
    the main loop would stop LLVM vectorizing it, hence the float32 row.) Each row takes two
    passes: e = e^(−|a|) into `row`, then the rest, each e read back and its term written in
    its place — the same operations on the same values as one pass, but a shorter chain of
    dependent operations per element, which the CPU overlaps better (docs/speed.md)."""
    N, D = logits.shape
    B = x.shape[0]
    for j in range(D):
        colsum[j] = 0.0
        db[j] = 0
    for r in range(N):
        i = r % B
        for j in range(D):
            row[j] = exp_neg_f32(abs(logits[r, j] + b[j]))
        for j in range(D):
            a = logits[r, j] + b[j]
            xv = x[i, j]
            e = row[j]
            row[j] = (a if a > F32_ZERO else F32_ZERO) - xv * a + log1p_f32(e)
            q = F32_ONE / (F32_ONE + e)
            s = q if a >= F32_ZERO else e * q
            s = s if a == a else a                               # NaN stays NaN
            g = (s - xv) * scale
            logits[r, j] = g
            db[j] += g
        for j in range(D):
            colsum[j] += row[j]
    total = 0.0
    for j in range(D):
        total += colsum[j]
    return total


def bernoulli_loglik_rows(logits, b, x, out, first):
    """out[r] = log p(x_i | z_r) = −Σ_j BCE(x_i, logits[r, j] + b_j), i = (first + r) % B,
    float64 (libm): the rows are decoder rows first, first + 1, … of samples × images.

    logits: (N, D), b: (D,), x: (B, D), out: (N,) float64. logits are left unchanged."""
    N, D = logits.shape
    B = x.shape[0]
    for r in range(N):
        i = (first + r) % B
        acc = 0.0
        for j in range(D):
            af = np.float64(logits[r, j] + b[j])
            acc += (af if af > 0 else 0.0) - np.float64(x[i, j]) * af + np.log1p(np.exp(-abs(af)))
        out[r] = -acc


def bernoulli_loglik_rows_f32(logits, b, x, out, first, row):
    """bernoulli_loglik_rows for float32, vectorized: each row's terms go to `row` (D,)
    float32 scratch in two vectorized passes (e^(−|a|), then the term from it, as in
    bernoulli_logits_f32), then are summed in float64 over 8 fixed lanes."""
    N, D = logits.shape
    B = x.shape[0]
    D8 = D - D % 8
    for r in range(N):
        i = (first + r) % B
        for j in range(D):
            row[j] = exp_neg_f32(abs(logits[r, j] + b[j]))
        for j in range(D):
            a = logits[r, j] + b[j]
            row[j] = (a if a > F32_ZERO else F32_ZERO) - x[i, j] * a + log1p_f32(row[j])
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for j in range(0, D8, 8):
            s0 += row[j]
            s1 += row[j + 1]
            s2 += row[j + 2]
            s3 += row[j + 3]
            s4 += row[j + 4]
            s5 += row[j + 5]
            s6 += row[j + 6]
            s7 += row[j + 7]
        for j in range(D8, D):
            s0 += row[j]
        out[r] = -(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))


# ---------------------------------------------------------------------------------------------
# Training on the importance-weighted bound (numpyvae/oracle/iwae.py has the formulas)
#   s_r = log p(x|z_r) + log p(z_r) − log q(z_r|x) per decoder row r = k·B + i (sample k, image i)
#   w̃ = softmax over the K rows of each image;  dℓ_r = w̃_r (sigmoid(ℓ_r) − x_i)

def iwae_weights(log_px, log_ratio, w):
    """s = log_px + log_ratio (N,) float64, N = K·B rows, row k·B + i of image i; for each
    image w̃ = softmax over its K rows, written into w (K, B) in w's dtype. Returns
    Σ_i L_K(x_i), L_K = logsumexp_k s − log K = m + log Σ_k e^{s_k − m} − log K (float64)."""
    K, B = w.shape
    total = 0.0
    for i in range(B):
        m = log_px[i] + log_ratio[i]
        for k in range(1, K):
            m = max(m, log_px[k * B + i] + log_ratio[k * B + i])
        acc = 0.0
        for k in range(K):
            acc += np.exp(log_px[k * B + i] + log_ratio[k * B + i] - m)
        for k in range(K):
            w[k, i] = np.exp(log_px[k * B + i] + log_ratio[k * B + i] - m) / acc
        total += m + np.log(acc) - np.log(K)
    return total


def bernoulli_weighted_grad(logits, b, x, w, db):
    """In place: logits ← dℓ = w̃_r (sigmoid(ℓ) − x), ℓ = logits + b (libm exp); db ← Σ_rows dℓ.

    logits: (N, D), row r of image r % B; b: (D,); x: (B, D); w: (N,) the rows' weights."""
    N, D = logits.shape
    B = x.shape[0]
    for j in range(D):
        db[j] = 0
    for r in range(N):
        i = r % B
        wr = np.float64(w[r])
        for j in range(D):
            af, xf = np.float64(logits[r, j] + b[j]), np.float64(x[i, j])
            e = np.exp(-abs(af))
            q = 1.0 / (1.0 + e)
            s = q if af >= 0 else e * q
            logits[r, j] = (s - xf) * wr
            db[j] += logits[r, j]


def bernoulli_weighted_grad_f32(logits, b, x, w, db, row):
    """bernoulli_weighted_grad for float32 with the vectorizable exp_neg_f32, in two passes
    per row through `row` (D,) float32 scratch, as bernoulli_logits_f32."""
    N, D = logits.shape
    B = x.shape[0]
    for j in range(D):
        db[j] = 0
    for r in range(N):
        i = r % B
        wr = w[r]
        for j in range(D):
            row[j] = exp_neg_f32(abs(logits[r, j] + b[j]))
        for j in range(D):
            a = logits[r, j] + b[j]
            e = row[j]
            q = F32_ONE / (F32_ONE + e)
            s = q if a >= F32_ZERO else e * q
            s = s if a == a else a                               # NaN stays NaN
            g = (s - x[i, j]) * wr
            logits[r, j] = g
            db[j] += g


def row_sums(a, out):
    """out[i] = Σ_j a[i, j] in float64 (a: (B, Z), out: (B,) float64), without the casting
    buffer NumPy's sum(dtype=float64) allocates."""
    B, Z = a.shape
    for i in range(B):
        acc = 0.0
        for j in range(Z):
            acc += np.float64(a[i, j])
        out[i] = acc


# The encoder's gradient estimators for the bound (oracle/iwae.py's ESTIMATORS)
STANDARD, STL, DREG = 0, 1, 2
ESTIMATOR_CODES = {"standard": STANDARD, "stl": STL, "dreg": DREG}


def iwae_reparameterize_backward(dz, eps, z, w, sigma, estimator, dmu, dlogvar, db_mu,
                                 db_logvar):
    """dμ, dv = d(log σ²) (B, Z) and their column sums db_μ, db_v (Z,) from the decoder's dz
    (K, B, Z), which holds −w̃ ∇_z log p(x|z); with d_k = dz_k + w̃_k z_k = −w̃_k ĝ_k:
        standard  p_k = d_k                          dv = ½σ Σ_k p_k ε_k − ½
        stl       p_k = d_k − w̃_k ε_k / σ           dv = ½σ Σ_k p_k ε_k
        dreg      p_k = w̃_k d_k − w̃_k² ε_k / σ      dv = ½σ Σ_k p_k ε_k
    and dμ = Σ_k p_k.  w: (K, B) the weights; estimator: STANDARD, STL or DREG."""
    K, B, Z = eps.shape
    for j in range(Z):
        db_mu[j] = 0
        db_logvar[j] = 0
    for i in range(B):
        for j in range(Z):
            sg = sigma[i, j]
            g_mu = 0.0                                   # the sums over K in float64
            g_ze = 0.0
            for k in range(K):
                wk = w[k, i]
                d = dz[k, i, j] + wk * z[k, i, j]
                e = eps[k, i, j]
                if estimator == STL:
                    d = d - wk * e / sg
                elif estimator == DREG:
                    d = wk * d - wk * wk * e / sg
                g_mu += d
                g_ze += d * e
            dmu[i, j] = g_mu
            dlogvar[i, j] = g_ze * (sg * 0.5) - (0.5 if estimator == STANDARD else 0.0)
            db_mu[j] += dmu[i, j]
            db_logvar[j] += dlogvar[i, j]


# ---------------------------------------------------------------------------------------------
# Adam over one flat buffer (numpyvae/oracle/adam.py has the formulas and the NumPy version)

def adam_step(params, grads, m, v, one_minus_b1, b2, one_minus_b2, inv_sqrt_bc2, eps, step_size,
              tiny):
    """One in-place Adam update of params (P,) from grads (P,); m, v (P,) the moments.

    m ← m + (1−β₁)(g − m);   v ← β₂ v + (1−β₂) g g;   p ← p − step_size · m / (√v · c + ε)
    with c = 1/√(1−β₂ᵗ). All scalars in params' dtype. NumPy's path divides by √(1−β₂ᵗ)
    in float64 instead of multiplying by c: this differs by at most one rounding, and the
    float64 division alone (not vectorized 8-wide) would double this pass's time.

    A moment below `tiny` in magnitude is stored as 0 (numpyvae/fast/adam.py passes float32's
    smallest normal, 1.2e-38, and 0 — nothing flushed — for float64). The first moment of a
    weight whose gradient is mostly 0 (a border pixel few images light) shrinks ×0.9 a step and
    turns subnormal within a thousand steps; every later operation on it then costs a
    microcode assist on Intel CPUs (Adam 3× slower with half its moments subnormal) and, on
    AMD Zen 3, made this pass 1.8× slower with 2% of them subnormal (docs/speed.md). Its
    contribution to the parameter, below 1e-30, is below the last bit of any weight not ≈ 0:
    the flushed runs' parameters had the same bits (2,500 batch-16 steps of `train`, 2,258
    moments flushed; 4,000 steps through the API, 6,863)."""
    for k in range(params.shape[0]):
        g = grads[k]
        mk = m[k] + (g - m[k]) * one_minus_b1
        vk = v[k] * b2 + (g * one_minus_b2) * g
        mk = mk if abs(mk) >= tiny else mk - mk         # 0 in m's dtype (NaN stays NaN)
        vk = vk if vk >= tiny else vk - vk
        m[k] = mk
        v[k] = vk
        params[k] -= (mk / (np.sqrt(vk) * inv_sqrt_bc2 + eps)) * step_size


# ---------------------------------------------------------------------------------------------
# Batches: gather rows of the uint8 images and binarize them into a reused float buffer
# (numpyvae/oracle/binarize.py's binarize_into, the same numbers)

THRESHOLD, DYNAMIC, NONE = 0, 1, 2
BINARIZE_CODES = {"threshold": THRESHOLD, "dynamic": DYNAMIC, "none": NONE}


def gather_binarize(images, idx, mode, uniforms, out):
    """out[i] = binarize(images[idx[i]]) for i < B; returns out[:B].

    images: uint8 (N, D); idx: integer (B,); out: float (≥ B, D).
    mode THRESHOLD: [x ≥ 128] = round(x/255);  DYNAMIC: [255·u < x] with u = uniforms (≥ B, D)
    in out's dtype, drawn by the caller (rng.random(out=..., dtype=...)), i.e. x̃ ~
    Bernoulli(x/255);  NONE: x/255. uniforms is read only for DYNAMIC (pass an empty (0, D)
    array of out's dtype otherwise: one array type, one compiled kernel)."""
    N, D = images.shape
    B = idx.shape[0]
    for i in range(B):
        if idx[i] < 0 or idx[i] >= N:
            raise IndexError("gather_binarize: an index is outside 0 … N-1")
    if mode == DYNAMIC and (uniforms.shape[0] < B or uniforms.shape[1] != D):
        raise ValueError("gather_binarize: mode 'dynamic' needs uniforms of at least (B, D)")
    for i in range(B):
        row = idx[i]
        for j in range(D):
            p = images[row, j]
            if mode == THRESHOLD:
                out[i, j] = 1 if p >= 128 else 0
            elif mode == DYNAMIC:
                out[i, j] = uniforms[i, j] * 255       # rounded to out's dtype, as NumPy's
                out[i, j] = 1 if out[i, j] < p else 0
            else:
                out[i, j] = p / 255                    # float64 quotient, rounded once to out's dtype
    return out[:B]


# ---------------------------------------------------------------------------------------------
# The one place where kernels are jitted.  cache=True: a second start loads the machine code
# from __pycache__ (or NUMBA_CACHE_DIR) instead of compiling. Where no cache folder can be
# written (a read-only install and a read-only home), numba refuses cache=True outright; the
# kernels are then compiled on every start instead, with one notice.

log = logging.getLogger(__name__)
CACHE_PROBLEM = None              # why the kernels compile without a cache, if they do


def _renamed(kernel, name):
    """`kernel`'s code as a function called `name` (its own entry in numba's cache)."""
    f = types.FunctionType(kernel.__code__, kernel.__globals__, name, kernel.__defaults__,
                           kernel.__closure__)
    f.__qualname__ = name
    return f


def _jitter(**options):
    def jit(kernel):
        global CACHE_PROBLEM
        try:
            return njit(cache=CACHE_PROBLEM is None, error_model="numpy", nogil=True,
                        **options)(kernel)
        except RuntimeError as e:                       # "cannot cache function …"
            if CACHE_PROBLEM is not None or "cannot cache" not in str(e):
                raise
            CACHE_PROBLEM = str(e)
            log.warning("numba cannot cache its compiled kernels here (%s); compiling them on "
                        "every start instead (a few seconds). Set NUMBA_CACHE_DIR to a "
                        "writable folder to keep them.", e)
            return njit(error_model="numpy", nogil=True, **options)(kernel)
    return jit


class _SignalsAfterCompiling(numba_event.Listener):
    """Holds SIGINT, SIGTERM and SIGHUP while numba compiles (or loads from its cache) and
    delivers them once it is done. A Ctrl-C raised inside the compiler lands in one of LLVM's
    callbacks, where ctypes swallows it and leaves numba half-done ("no compiled object yet"
    at the next call); held, it arrives a kernel later, where the command turns it into its
    one line. Only the main thread takes signals; only there are they held."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.depth, self.saved, self.held = 0, None, None

    def _hold(self, signum, frame):
        self.held = self.held or signum

    def on_start(self, event):
        if threading.current_thread() is not threading.main_thread():
            return
        self.depth += 1
        if self.depth == 1:
            self.held = None
            # a handler set outside Python (getsignal None) cannot be put back: not held
            self.saved = {s: h for s in self.SIGNALS if (h := signal.getsignal(s)) is not None}
            for s in self.saved:
                signal.signal(s, self._hold)

    def on_end(self, event):
        if threading.current_thread() is not threading.main_thread() or self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            for s, handler in self.saved.items():
                signal.signal(s, handler)
            if self.held is not None:
                signal.raise_signal(self.held)      # to the handler the command had


numba_event.register("numba:compiler_lock", _SignalsAfterCompiling())

_jit = _jitter()
_inline = _jitter(inline="always")

exp_neg_f32 = _inline(exp_neg_f32)
log1p_f32 = _inline(log1p_f32)
tanh_f32 = _inline(tanh_f32)
transpose_into = _jit(transpose_into)
bias_leaky_relu = _jit(bias_leaky_relu)
leaky_relu_backward_bias = _jit(leaky_relu_backward_bias)
bias_tanh = _jit(bias_tanh)
bias_tanh_f32 = _jit(bias_tanh_f32)
tanh_backward_bias = _jit(tanh_backward_bias)
reparameterize = _jit(reparameterize)
reparameterize_backward = _jit(reparameterize_backward)
sample_log_ratio = _jit(sample_log_ratio)
bernoulli_logits = _jit(bernoulli_logits)
bernoulli_logits_f32 = _jit(bernoulli_logits_f32)
bernoulli_loglik_rows = _jit(bernoulli_loglik_rows)
# Jitted twice from one source: with FMA contraction for evaluation, with every rounding kept
# for training on the bound (its log weights move the gradients). numba's on-disk cache keys a
# kernel by its module, name and line, not by its compile options: under one name the second
# jit would load the first one's machine code, whichever was compiled first. The training
# kernel is the same code under a name of its own (`_renamed`).
bernoulli_loglik_rows_f32_train = _jit(_renamed(bernoulli_loglik_rows_f32,
                                                "bernoulli_loglik_rows_f32_train"))
bernoulli_loglik_rows_f32 = _jitter(fastmath={"contract"})(bernoulli_loglik_rows_f32)
iwae_weights = _jit(iwae_weights)
row_sums = _jit(row_sums)
bernoulli_weighted_grad = _jit(bernoulli_weighted_grad)
bernoulli_weighted_grad_f32 = _jit(bernoulli_weighted_grad_f32)
iwae_reparameterize_backward = _jit(iwae_reparameterize_backward)
adam_step = _jit(adam_step)
gather_binarize = _jit(gather_binarize)
