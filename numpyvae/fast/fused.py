"""The numba path's training step and log weights: the oracle's forward + backward
(numpyvae/oracle/network.py) and log weights (numpyvae/oracle/likelihood.py) on
preallocated workspaces.

The same mathematics as the oracle's, laid out for speed: every matrix product is one BLAS call writing into a workspace
(`np.matmul(a, b.T, out=...)`, transposes are views), and everything between the products is
one numba pass (numpyvae/fast/kernels.py) that also adds the bias and produces the bias
gradient.
A forward product of few rows (n ≤ `few_rows`, chosen by `few_rows` below for the BLAS
kernel) is BLAS's W aᵀ (o, n) instead, copied out transposed: OpenBLAS's SkylakeX kernel runs
a Wᵀ view 1.25–1.8× slower than that at 16–32 rows, with the same float32 bits
(docs/speed.md).
The kernels (the hidden activation f, LeakyReLU or tanh, and float32 or float64) come from
`numba_kernels` below, chosen once per model.
After the first call at a given size a step allocates nothing: the workspaces are sized for
the largest batch seen and smaller batches (the last, partial one) use their leading rows.

    forward   h1 = f(x W1ᵀ + b1)  h2 = f(h1 W2ᵀ + b2)                        (B, H)
              μ = h2 W_μᵀ + b_μ,  v = h2 W_vᵀ + b_v,  z = μ + e^{v/2} ε        (B, Z), (L, B, Z)
              g1 = f(z Wd1ᵀ + b)  g2 = f(g1 Wd2ᵀ + b)  ℓ = g2 W_oᵀ + b          (N, ·), N = L·B
    backward  dℓ = (sigmoid(ℓ) − x)/L, then each layer: dW = dyᵀ x_in, dx_in = dy W
The 20 matrix products (7 forward, 7 weight gradients, 6 input gradients) are listed in
`matmul_shapes`, which benchmarks/peers.py uses for its GEMM-only floor.
"""
import threading
from types import SimpleNamespace

import numpy as np

from ..oracle.activations import SLOPE
from .. import threads
from . import kernels


def numba_kernels(dtype, activation):
    """The numba path's kernels for arrays of `dtype` and the hidden `activation`:
        act(a, b)                a ← f(a + b), in place
        act_backward(d, h, db)   d ← d ⊙ f'(·) from the layer's output h; db = Σ_rows d
        bernoulli_logits(ℓ, b, x, 1/L, db, colsum, row)   BCE sum; ℓ ← dℓ in place
        loglik_rows(ℓ, b, x, out, first, row)   out[r] = log p(x|z) of decoder row first + r
        loglik_rows_train(…)     the same for training on the bound: every rounding kept
        weighted_grad(ℓ, b, x, w, db, row)   ℓ ← w̃_r (sigmoid(ℓ + b) − x) in place; db
    The float32 kernels use float32 polynomials for exp/log1p/tanh (numpyvae/fast/kernels.py)."""
    dtype = np.dtype(dtype)
    f32 = dtype == np.float32
    if activation == "tanh":
        act = kernels.bias_tanh_f32 if f32 else kernels.bias_tanh
        act_backward = kernels.tanh_backward_bias
    else:
        slope = dtype.type(SLOPE)

        def act(a, b):
            kernels.bias_leaky_relu(a, b, slope)

        def act_backward(d, h, db):
            kernels.leaky_relu_backward_bias(d, h, slope, db)
    if f32:
        bernoulli_logits = kernels.bernoulli_logits_f32
        loglik_rows = kernels.bernoulli_loglik_rows_f32
        loglik_rows_train = kernels.bernoulli_loglik_rows_f32_train
        weighted_grad = kernels.bernoulli_weighted_grad_f32
    else:
        bernoulli_logits = kernels.bernoulli_logits

        def loglik_rows(logits, b, x, out, first, row):
            kernels.bernoulli_loglik_rows(logits, b, x, out, first)
        loglik_rows_train = loglik_rows

        def weighted_grad(logits, b, x, w, db, row):
            kernels.bernoulli_weighted_grad(logits, b, x, w, db)
    return SimpleNamespace(act=act, act_backward=act_backward, bernoulli_logits=bernoulli_logits,
                           loglik_rows=loglik_rows, loglik_rows_train=loglik_rows_train,
                           weighted_grad=weighted_grad)


# Where numpy's float32 product a·Wᵀ, with W's `.T` view, runs 1.25–1.8× slower than W·aᵀ when a
# has 16–32 rows, with the same bits: OpenBLAS's AVX-512 kernels (threadpoolctl's
# `architecture`; on Zen 4 0.3.27 calls its kernel Cooperlake, 0.3.29–0.3.31 SkylakeX), from
# 0.3.27 on (measured 0.3.27, 0.3.29, 0.3.30, 0.3.31; hidden 37–1000, 1–128 rows, 1 and 2
# threads). At 64 rows it depends on the shape and the threads (0.85–1.2×), at 128 0.79–1.06×,
# and from 256 the usual way is faster. The rest keep the usual way: 0.3.21 (numpy 1.24) is
# slower the other way on two threads (0.61–0.88×), the AVX2 kernels (Haswell, Zen) are about
# as fast the usual way and round differently the other, float64 is slower the other way (a
# batch-16 step 0.91×), and OpenBLAS's SapphireRapids kernel is not measured. All on a Zen 4,
# 1 and 2 threads; not on Intel's AVX-512 CPUs (docs/speed.md).
FEW_ROWS_KERNELS = ("SkylakeX", "Cooperlake")
FEW_ROWS_SINCE = (0, 3, 27)
FEW_ROWS = 32


def _version(text):
    """'0.3.31.188.0' -> (0, 3, 31); None or unreadable -> ()."""
    parts = []
    for piece in str(text or "").split(".")[:3]:
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def few_rows(dtype):
    """The most rows a forward product of the numba step runs with as W·aᵀ (FusedStep):
    FEW_ROWS for float32 where numpy's BLAS is OpenBLAS ≥ FEW_ROWS_SINCE with one of
    FEW_ROWS_KERNELS (in any case: builds for one CPU say "SKYLAKEX"), else 0 (never)."""
    if np.dtype(dtype) != np.float32:
        return 0
    names = {k.lower() for k in FEW_ROWS_KERNELS}
    libs = threads.numpy_blas()
    fits = libs and all(lib.internal_api == "openblas" and _version(lib.version) >= FEW_ROWS_SINCE
                        and str(getattr(lib, "architecture", None)).lower() in names
                        for lib in libs)
    return FEW_ROWS if fits else 0


def turned_round(rows, few_rows):
    """Whether FusedStep runs a forward product of `rows` rows as W aᵀ (see the docstring)."""
    return rows <= few_rows


def matmul_shapes(batch, x_dim, hidden_dim, latent_dim, samples=1, few_rows=0):
    """The step's matrix products in order, as (m, k, n, a_transposed, b_transposed):
    C (m, n) = A (m, k) · B (k, n), where a transposed operand is the `.T` view of a
    C-contiguous array, exactly as FusedStep(…, few_rows).loss_and_grads passes it to BLAS."""
    B, D, H, Z, N = batch, x_dim, hidden_dim, latent_dim, samples * batch

    def fwd(n, i, o):                       # (n, o) = a (n, i) · Wᵀ, or its W aᵀ (o, n)
        return (o, i, n, 0, 1) if turned_round(n, few_rows) else (n, i, o, 0, 1)
    forward = [fwd(B, D, H), fwd(B, H, H), fwd(B, H, Z), fwd(B, H, Z),
               fwd(N, Z, H), fwd(N, H, H), fwd(N, H, D)]
    weight_grads = [(D, N, H, 1, 0), (H, N, H, 1, 0), (H, N, Z, 1, 0), (Z, B, H, 1, 0),
                    (Z, B, H, 1, 0), (H, B, H, 1, 0), (H, B, D, 1, 0)]
    input_grads = [(N, D, H, 0, 0), (N, H, H, 0, 0), (N, H, Z, 0, 0), (B, Z, H, 0, 0),
                   (B, Z, H, 0, 0), (B, H, H, 0, 0)]
    return forward + weight_grads + input_grads


class FusedStep:
    """Workspaces and the fused loss-and-gradients of one VAE (see VAE(backend="numba"))."""

    def __init__(self, model, kern, few_rows=0):
        """kern: numba_kernels(model.dtype, model.activation); few_rows: the most rows a
        forward product may have to run as W aᵀ (`few_rows`), 0 for never."""
        self.model = model
        self.dtype = model.dtype
        self.act, self.act_backward = kern.act, kern.act_backward
        self.bernoulli = kern.bernoulli_logits
        self.batch_cap = self.rows_cap = 0
        self.views = {}                          # (B, N) -> _views' namespace, while it holds
        self.few_rows = few_rows
        widest = max(model.x_dim, model.hidden_dim, model.latent_dim)
        self.product_t = np.empty(widest * few_rows, self.dtype)   # W aᵀ (o, n), n ≤ few_rows

    def __call__(self, x, eps, grads):
        """The batch's −ELBO sum (backend.training_step's interface); see loss_and_grads."""
        return self.loss_and_grads(x, eps, grads)[0]

    def _ensure(self, B, N):
        """Workspaces for batch B and N = L·B decoder rows; grown, never shrunk."""
        if B <= self.batch_cap and N <= self.rows_cap:
            return
        B, N = max(B, self.batch_cap), max(N, self.rows_cap)
        D, H, Z = self.model.x_dim, self.model.hidden_dim, self.model.latent_dim
        e = lambda *shape: np.empty(shape, self.dtype)       # noqa: E731
        self.h1, self.h2, self.dh1, self.dh2, self.tmp_h = (e(B, H) for _ in range(5))
        self.mu, self.logvar, self.sigma, self.dmu, self.dlogvar = (e(B, Z) for _ in range(5))
        self.z, self.dz = e(N * Z), e(N * Z)                  # (L, B, Z) as flat rows
        self.g1, self.g2, self.dg1, self.dg2 = (e(N, H) for _ in range(4))
        self.logits = e(N, D)                                 # ℓ, then dℓ in place
        self.colsum = np.empty(D, np.float64)                 # per-column BCE sums
        self.row = np.empty(D, self.dtype)                    # one row's BCE terms
        self.batch_cap, self.rows_cap = B, N
        self.views.clear()                                    # views of the old workspaces

    def _forward(self, a, W, out):
        """out (n, o) = a (n, i) · Wᵀ: one BLAS call on W's `.T` view, or, for n ≤ few_rows,
        BLAS's W aᵀ (o, n) into scratch, then copied into out transposed."""
        n, o = out.shape
        if not turned_round(n, self.few_rows):
            np.matmul(a, W.T, out=out)
            return
        t = self.product_t[:o * n].reshape(o, n)
        np.matmul(W, a.T, out=t)                                         # (o, n)
        kernels.transpose_into(t, out)

    def _views(self, B, N):
        """The workspaces' leading rows for batch B and N decoder rows, by name; made once per
        size (a training run has two: its full batch and its last one) and kept until the
        workspaces grow."""
        self._ensure(B, N)
        if (B, N) in self.views:
            return self.views[B, N]
        Z = self.model.latent_dim
        v = SimpleNamespace(**{name: getattr(self, name)[:B] for name in (
            "h1", "h2", "dh1", "dh2", "tmp_h",                           # (B, H)
            "mu", "logvar", "sigma", "dmu", "dlogvar")})                 # (B, Z)
        v.z, v.dz = self.z[:N * Z].reshape(N, Z), self.dz[:N * Z].reshape(N, Z)   # (N, Z)
        for name in ("g1", "g2", "dg1", "dg2"):
            setattr(v, name, getattr(self, name)[:N])                    # (N, H)
        v.logits = self.logits[:N]                                       # (N, D)
        self.views[B, N] = v
        return v

    def _encode(self, x, v):
        """h1, h2, and μ, v = log σ² without their biases (the next kernel adds them)."""
        p, act, fwd = self.model.params, self.act, self._forward
        fwd(x, p["Encoder.FC_enc1.weight"], v.h1)                        # (B, H)
        act(v.h1, p["Encoder.FC_enc1.bias"])
        fwd(v.h1, p["Encoder.FC_enc2.weight"], v.h2)                     # (B, H)
        act(v.h2, p["Encoder.FC_enc2.bias"])
        fwd(v.h2, p["Encoder.FC_mean.weight"], v.mu)                     # (B, Z)
        fwd(v.h2, p["Encoder.FC_std.weight"], v.logvar)                  # (B, Z)

    def _decode(self, v):
        """g1, g2, and the logits without their bias (the next kernel adds it)."""
        p, act, fwd = self.model.params, self.act, self._forward
        fwd(v.z, p["Decoder.FC_dec1.weight"], v.g1)                      # (N, H)
        act(v.g1, p["Decoder.FC_dec1.bias"])
        fwd(v.g1, p["Decoder.FC_dec2.weight"], v.g2)                     # (N, H)
        act(v.g2, p["Decoder.FC_dec2.bias"])
        fwd(v.g2, p["Decoder.FC_output.weight"], v.logits)               # (N, D)

    def _decoder_backward(self, v, g):
        """From dℓ (in v.logits) to the decoder's weight gradients and dz (v.dz)."""
        p, mm, act_backward = self.model.params, np.matmul, self.act_backward
        mm(v.logits.T, v.g2, out=g["Decoder.FC_output.weight"])          # (D, H)
        mm(v.logits, p["Decoder.FC_output.weight"], out=v.dg2)          # (N, H)
        act_backward(v.dg2, v.g2, g["Decoder.FC_dec2.bias"])
        mm(v.dg2.T, v.g1, out=g["Decoder.FC_dec2.weight"])               # (H, H)
        mm(v.dg2, p["Decoder.FC_dec2.weight"], out=v.dg1)                # (N, H)
        act_backward(v.dg1, v.g1, g["Decoder.FC_dec1.bias"])
        mm(v.dg1.T, v.z, out=g["Decoder.FC_dec1.weight"])                # (H, Z)
        mm(v.dg1, p["Decoder.FC_dec1.weight"], out=v.dz)                 # (N, Z)

    def _encoder_backward(self, x, v, g):
        """From dμ, dv (v.dmu, v.dlogvar) to the encoder's weight gradients."""
        p, mm, act_backward = self.model.params, np.matmul, self.act_backward
        mm(v.dmu.T, v.h2, out=g["Encoder.FC_mean.weight"])               # (Z, H)
        mm(v.dlogvar.T, v.h2, out=g["Encoder.FC_std.weight"])            # (Z, H)
        mm(v.dmu, p["Encoder.FC_mean.weight"], out=v.dh2)                # (B, H)
        mm(v.dlogvar, p["Encoder.FC_std.weight"], out=v.tmp_h)           # (B, H)
        v.dh2 += v.tmp_h
        act_backward(v.dh2, v.h2, g["Encoder.FC_enc2.bias"])
        mm(v.dh2.T, v.h1, out=g["Encoder.FC_enc2.weight"])               # (H, H)
        mm(v.dh2, p["Encoder.FC_enc2.weight"], out=v.dh1)                # (B, H)
        act_backward(v.dh1, v.h1, g["Encoder.FC_enc1.bias"])
        mm(v.dh1.T, x, out=g["Encoder.FC_enc1.weight"])                  # (H, D)

    def loss_and_grads(self, x, eps, grads):
        """−ELBO summed over the batch and its gradients written into `grads` (dict of arrays).

        x: (B, D) of the model's dtype; eps: (L, B, Z). Returns (loss, recon, kl) as floats."""
        p, g, k = self.model.params, grads, kernels
        L, B, Z = eps.shape
        v = self._views(B, L * B)
        z3, dz3 = v.z.reshape(L, B, Z), v.dz.reshape(L, B, Z)           # (L, B, Z)
        self._encode(x, v)
        # z = μ + σ ε and the analytic KL (K&W 2014, §2.4, App. B)
        kl = k.reparameterize(v.mu, p["Encoder.FC_mean.bias"], v.logvar, p["Encoder.FC_std.bias"],
                              eps, v.sigma, z3)
        self._decode(v)
        # 1/L Σ_l BCE(x, ℓ_l) (K&W 2014, eq. 7); logits become dℓ = (sigmoid(ℓ) − x)/L
        recon = self.bernoulli(v.logits, p["Decoder.FC_output.bias"], x,
                               self.dtype.type(1.0 / L), g["Decoder.FC_output.bias"],
                               self.colsum, self.row) / L
        self._decoder_backward(v, g)
        # through z = μ + σ ε, plus the KL's own gradient
        k.reparameterize_backward(dz3, eps, v.mu, v.logvar, v.sigma, v.dmu, v.dlogvar,
                                  g["Encoder.FC_mean.bias"], g["Encoder.FC_std.bias"])
        self._encoder_backward(x, v, g)
        return recon + kl, recon, kl


class IWAEStep(FusedStep):
    """The fused loss-and-gradients of −L_K (numpyvae/oracle/iwae.py) for one VAE, by one of
    the estimators "standard", "stl", "dreg": FusedStep's encoder and decoder passes, and
    between them
        z = μ + σ ε (kernels.reparameterize), the rows' log p(z) − log q(z|x)
        (kernels.sample_log_ratio) and log p(x|z) (kernels.bernoulli_loglik_rows[_f32_train]),
        w̃ = the softmax of their sum over each image's K rows (kernels.iwae_weights),
        dℓ = w̃ (sigmoid(ℓ) − x) (kernels.bernoulli_weighted_grad[_f32]),
        dμ, dv by the estimator (kernels.iwae_reparameterize_backward).
    Nothing is allocated after the first step at a size: the per-row log weights and the
    weights live in workspaces of their own."""

    def __init__(self, model, kern, few_rows=0, estimator="standard"):
        super().__init__(model, kern, few_rows)
        self.estimator = kernels.ESTIMATOR_CODES[estimator]
        self.loglik_rows, self.weighted_grad = kern.loglik_rows_train, kern.weighted_grad
        self.iwae_images = self.iwae_rows = 0

    def _ensure_iwae(self, B, N):
        """The bound's own workspaces for batch B and N = K·B rows; grown, never shrunk."""
        if B <= self.iwae_images and N <= self.iwae_rows:
            return
        B, N = max(B, self.iwae_images), max(N, self.iwae_rows)
        self.log_px, self.log_ratio = np.empty(N), np.empty(N)        # (N,) float64
        self.weights = np.empty(N, self.dtype)                        # (N,) w̃, as (K, B)
        self.sum_logvar = np.empty(B)                                 # (B,) float64
        self.iwae_images, self.iwae_rows = B, N

    def loss_and_grads(self, x, eps, grads):
        """−Σ_b L_K and its gradients by the estimator, written into `grads`.

        x: (B, D) of the model's dtype; eps: (K, B, Z). Returns (loss,) as a float."""
        p, g, k = self.model.params, grads, kernels
        K, B, Z = eps.shape
        N = K * B
        self._ensure_iwae(B, N)
        v = self._views(B, N)
        z3, dz3 = v.z.reshape(K, B, Z), v.dz.reshape(K, B, Z)           # (K, B, Z)
        log_px, log_ratio = self.log_px[:N], self.log_ratio[:N]         # (N,) float64
        w = self.weights[:N]                                            # (N,)
        self._encode(x, v)
        k.reparameterize(v.mu, p["Encoder.FC_mean.bias"], v.logvar, p["Encoder.FC_std.bias"],
                         eps, v.sigma, z3)                              # (its KL is not used)
        # log p(z) − log q(z|x) per row (the same z, bit for bit), then log p(x|z) per row
        k.row_sums(v.logvar, self.sum_logvar[:B])
        k.sample_log_ratio(v.mu, v.sigma, self.sum_logvar[:B], eps.reshape(N, Z), 0, v.z,
                           log_ratio)
        self._decode(v)
        self.loglik_rows(v.logits, p["Decoder.FC_output.bias"], x, log_px, 0, self.row)
        bound = k.iwae_weights(log_px, log_ratio, w.reshape(K, B))
        # logits become dℓ = w̃ (sigmoid(ℓ) − x)
        self.weighted_grad(v.logits, p["Decoder.FC_output.bias"], x, w,
                           g["Decoder.FC_output.bias"], self.row)
        self._decoder_backward(v, g)
        k.iwae_reparameterize_backward(dz3, eps, z3, w.reshape(K, B), v.sigma, self.estimator,
                                       v.dmu, v.dlogvar, g["Encoder.FC_mean.bias"],
                                       g["Encoder.FC_std.bias"])
        self._encoder_backward(x, v, g)
        return (-bound,)


# Decoder rows per block in LogWeights: a 32nd of a full chunk (CHUNK_ROWS), so that 2, 4 or 8
# workers share it evenly. Each block's products are their own BLAS calls, so a block's
# numbers depend on its rows and the BLAS's thread count only (OpenBLAS rounds a row
# differently when the rows around it change), never on which worker decodes it.
BLOCK_ROWS = 625
# Rows per chunk (samples × images a call) in likelihood.log_likelihood on this path: 32 blocks.
# A chunk ends with a worker waiting for the other's last block, and its scratch is a block a
# worker, so a chunk 4× the NumPy path's (likelihood.ROWS) costs 1.6 MB of ε and no more
# logits. L₅₀₀₀ of 20 images on 2 workers (Zen 4): the waits 5–12 ms in all against 12–33 ms.
CHUNK_ROWS = 32 * BLOCK_ROWS


def blocks(n_rows, block):
    """[(lo, hi), …]: rows 0 … n_rows − 1 in consecutive blocks of `block` rows, the last one
    shorter. Every row in exactly one block."""
    return [(lo, min(lo + block, n_rows)) for lo in range(0, n_rows, block)]


class LogWeights:
    """Fused log importance weights for likelihood.log_likelihood (numba backend).

    For fixed images x: (B, D), called with ε: (S, B, Z) chunks (S·B ≤ rows), returns
    w = log p(x|z) + log p(z) − log q(z|x): (S, B) float64, as likelihood.log_weights does.
    The encoder runs once; each chunk is decoded block by block (BLOCK_ROWS rows), and a
    block costs one pass for z = μ + σ ε and log p(z) − log q(z|x), the decoder's three
    products, two bias+activation passes and one fused pass for the per-row Bernoulli
    log-likelihood. With workers > 1, that many Python threads share a chunk's blocks (the
    BLAS and the kernels release Python's lock); the numbers are the same bits as with one."""

    def __init__(self, model, x, rows, kern, workers=1):
        """kern: numba_kernels(model.dtype, model.activation); workers ≥ 1 threads."""
        self.model, self.x = model, x
        self.mu, logvar = model.encode(x)                                 # (B, Z)
        self.sigma = np.exp(0.5 * logvar)                                 # (B, Z)
        self.sum_logvar = logvar.sum(axis=1, dtype=np.float64)            # (B,)
        H, D, Z = model.hidden_dim, model.x_dim, model.latent_dim
        rows = max(rows, x.shape[0])
        block = min(rows, BLOCK_ROWS)
        self.workers = workers
        # each worker decodes one block at a time into scratch of its own, small enough to
        # stay in cache between the products and the passes over them
        self.z = np.empty((workers, block, Z), model.dtype)               # (T, n, Z)
        self.g1 = np.empty((workers, block, H), model.dtype)              # (T, n, H)
        self.g2 = np.empty((workers, block, H), model.dtype)              # (T, n, H)
        self.logits = np.empty((workers, block, D), model.dtype)          # (T, n, D)
        self.row = np.empty((workers, D), model.dtype)                    # a row per worker
        self.log_ratio = np.empty(rows, np.float64)                       # (rows,)
        self.log_px = np.empty(rows, np.float64)                          # (rows,)
        self.act, self.loglik_rows = kern.act, kern.loglik_rows

    def _decode(self, eps, spans, t):
        """For the rows of each block (lo, hi) that `spans` yields, from ε: (N, Z), the rows'
        log p(z) − log q(z|x) into self.log_ratio and log p(x|z) into self.log_px, with
        worker t's scratch."""
        p, mm, x = self.model.params, np.matmul, self.x
        for lo, hi in spans:
            n = hi - lo
            z, g1, g2, logits = self.z[t, :n], self.g1[t, :n], self.g2[t, :n], self.logits[t, :n]
            kernels.sample_log_ratio(self.mu, self.sigma, self.sum_logvar, eps[lo:hi], lo, z,
                                     self.log_ratio[lo:hi])                 # (n, Z), (n,)
            mm(z, p["Decoder.FC_dec1.weight"].T, out=g1)                  # (n, H)
            self.act(g1, p["Decoder.FC_dec1.bias"])
            mm(g1, p["Decoder.FC_dec2.weight"].T, out=g2)                 # (n, H)
            self.act(g2, p["Decoder.FC_dec2.bias"])
            mm(g2, p["Decoder.FC_output.weight"].T, out=logits)           # (n, D)
            self.loglik_rows(logits, p["Decoder.FC_output.bias"], x, self.log_px[lo:hi], lo,
                             self.row[t])

    def _decode_all(self, eps):
        """_decode over every row of ε: (N, Z): the workers (this thread the first) take the
        blocks one at a time, the next free worker the next block, so a worker slowed by the
        machine takes fewer. An exception in any worker is raised here once all are done."""
        spans = blocks(len(eps), BLOCK_ROWS)
        n = min(self.workers, len(spans))
        if n == 1:
            return self._decode(eps, spans, 0)
        queue, failed = iter(spans), []        # next() on a list iterator: one block each

        def work(t):
            try:
                self._decode(eps, queue, t)
            except BaseException as e:          # Ctrl-C in this thread too: raised below
                failed.append(e)
        others = [threading.Thread(target=work, args=(t,)) for t in range(1, n)]
        for th in others:
            th.start()
        work(0)
        for th in others:
            th.join()
        if failed:
            raise failed[0]

    def __call__(self, model, x, eps):
        """w: (S, B) for ε: (S, B, Z), taken in the model's dtype; model and x are the ones
        given at construction (likelihood.log_weights' interface). A chunk of more rows than
        the workspaces hold is refused (the kernels do not check their bounds)."""
        S, B, Z = eps.shape
        N = S * B
        if N > len(self.log_px) or B != len(self.mu):
            raise ValueError(f"LogWeights: ε of shape {eps.shape} is {N} rows of {B} images; "
                             f"made for at most {len(self.log_px)} rows of {len(self.mu)} images")
        self._decode_all(np.ascontiguousarray(eps, self.mu.dtype).reshape(N, Z))
        return (self.log_px[:N] + self.log_ratio[:N]).reshape(S, B)
