"""The implementations `benchmarks.throughput` and `benchmarks.sweep` time, each written the way
someone who knows that library writes a training loop for speed.

Every peer trains the same network (784 → H → H → 2·Z, z = μ + σ·ε, Z → H → H → 784,
LeakyReLU(0.2) or tanh, Bernoulli decoder) on the same objective, summed over the batch — the
ELBO (cross-entropy from logits + analytic KL, averaged over the K noise samples), or the
importance-weighted bound L_K of the K samples (Burda et al. 2015) with its encoder gradient by
one estimator (standard, stl or dreg; numpyvae/oracle/iwae.py) — with Adam in
torch.optim.Adam's semantics, from the same parameters, on the same preloaded batches X[a:b]
with the same ε, E[:, a:b] (K samples per image):

    numpyvae numba           VAE(backend="numba") + Adam(backend="numba"): the fused step
    numpyvae numpy           the plain NumPy path, the readable oracle
    torch eager              reference/model.py (the bound: neg_iwae_for_speed on its Model) +
                             torch.optim.Adam as its defaults make it (on the CPU, a Python
                             loop over the parameters)
    torch eager fused-adam   the same with Adam(fused=True): one kernel for the whole update
    torch compile            torch.compile (inductor) of the loss, backward through
                             AOTAutograd, + Adam(fused=True)
    jax jit                  jax.jit of one step: value_and_grad (the bound: jax.vjp) + Adam
                             written in jax
    jax scan-epoch           the same step under jax.lax.scan, the epoch's full batches in one
                             compiled call (a last partial batch goes through the jitted step)
    gemm floor openblas      only the step's 20 matrix products (numpyvae.fast.fused.matmul_shapes,
                             the decoder's on K·B rows)
                             in NumPy/OpenBLAS: what numpyvae's design cannot go below
    gemm floor torch         the same 20 products in Torch on the CPU (MKL on x86)
    torch <gpu> eager, torch <gpu> eager fused-adam, torch <gpu> compile
                             the Torch rows on CUDA (or MPS), when one is present

`make(name, setup)` builds one; its `epoch(ranges)` runs the steps X[a:b] for (a, b) in ranges
and returns their losses (a float64 array; None for the GEMM floors, which train nothing).
A peer whose library is not installed raises `Missing`, whose message says how to install it.
"""
import math
import shutil
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

import numpyvae as nv
from numpyvae import threads
from numpyvae.fast import fused
from numpyvae.fast.fused import CHUNK_ROWS as LL_ROWS
from numpyvae.fast.fused import matmul_shapes
from numpyvae.oracle.activations import check_name
from numpyvae.oracle.iwae import check_objective

D = 784
SLOPE = 0.2                                     # LeakyReLU(0.2), the notebook's
BETAS, ADAM_EPS = (0.9, 0.999), 1e-8            # torch.optim.Adam's defaults
JAX_HINT = "pip install -e '.[bench]' (or: pip install jax)"
TORCH_HINT = "pip install -e '.[reference]' (or: pip install torch)"

CPU_NAMES = ["numpyvae numba", "numpyvae numpy", "torch eager", "torch eager fused-adam",
             "torch compile", "jax jit", "jax scan-epoch", "gemm floor openblas",
             "gemm floor torch"]
FLOOR = "gemm floor openblas"                   # the ratios' denominators
TORCH = "torch eager"
TORCH_MODES = {"eager": "eager", "eager fused-adam": "fused", "compile": "compile"}


class Missing(Exception):
    """A peer's library (or tool) is not installed; the message says how to get it."""


@dataclass
class Setup:
    """What every peer starts from: parameters (state_dict names, Torch layout), the data
    X (N, D) and noise E (K, N, Z) as NumPy arrays of `dtype`, the learning rate, and what
    is trained: the activation, the objective ("elbo" or "iwae") and, for "iwae", the encoder
    gradient's estimator (numpyvae.oracle.iwae.check_objective's pairs)."""
    params: dict
    X: np.ndarray
    E: np.ndarray
    dtype: str = "float32"
    lr: float = 1e-3
    activation: str = "leaky_relu"
    objective: str = "elbo"
    estimator: str = None

    def __post_init__(self):
        check_name(self.activation)
        self.objective, self.estimator = check_objective(self.objective, self.estimator)
        if self.E.ndim != 3 or self.E.shape[1] != len(self.X):
            raise ValueError(f"E must be (K, N, Z) with N = {len(self.X)} rows of X; got "
                             f"{self.E.shape}")

    def objective_kwargs(self):
        """numpyvae's loss_and_grads/train_step keywords for this objective."""
        return dict(objective=self.objective, estimator=self.estimator)


@dataclass
class Peer:
    name: str
    epoch: Callable                              # ranges -> losses (float64 array) or None
    floor: bool = False                          # a GEMM floor: nothing to validate
    # ranges -> a note, called before each timed round-robin (quiet, then busy): numpyvae's
    # choice of BLAS threads, made as `--blas-threads auto` makes it at a run's start
    start: Callable = None


def gpu_names():
    """The Torch rows on the accelerator Torch would pick (CUDA, then MPS), when present."""
    try:
        from reference.model import pick_device             # torch with it: an optional peer
    except ImportError:
        return []
    dev = pick_device().type
    return [] if dev == "cpu" else [f"torch {dev} {mode}" for mode in TORCH_MODES]


def torch_rows():
    """{row name: (device, mode)} for the Torch rows: the CPU's, then the accelerator's."""
    rows = {"torch eager": ("cpu", "eager"), "torch eager fused-adam": ("cpu", "fused"),
            "torch compile": ("cpu", "compile")}
    for name in gpu_names():
        device, mode = name.split(" ", 2)[1:]
        rows[name] = (device, TORCH_MODES[mode])
    return rows


def all_names():
    return CPU_NAMES + gpu_names()


def make(name, setup):
    """The peer called `name` (see all_names()), built from `setup`."""
    if name in ("numpyvae numba", "numpyvae numpy"):
        return Peer(name, *numpyvae_epoch(setup, name.split()[1]))
    if name in ("jax jit", "jax scan-epoch"):
        return Peer(name, jax_epoch(setup, scan=name == "jax scan-epoch"))
    if name in ("gemm floor openblas", "gemm floor torch"):
        H, Z = hidden_latent(setup.params)
        library = "torch" if name.endswith("torch") else "numpy"
        return Peer(name, gemm_floor_epoch(H, Z, setup.dtype, library, samples=len(setup.E)),
                    floor=True)
    if name in torch_rows():
        return Peer(name, torch_epoch(setup, *torch_rows()[name]))
    raise ValueError(f"unknown implementation {name!r}; known: {', '.join(all_names())}")


def hidden_latent(params):
    return params["Encoder.FC_enc1.weight"].shape[0], params["Encoder.FC_mean.weight"].shape[0]


# ---------------------------------------------------------------------------------------------
# numpyvae

def numpyvae_epoch(s, backend):
    """(epoch, floor=False, start): numpyvae as `python -m numpyvae.train` runs it, BLAS
    threads included — `start` times a step with each count (numpyvae.threads.choose, as
    --blas-threads auto) and the epochs after it train with the fastest."""
    H, Z = hidden_latent(s.params)
    model = nv.VAE(D, H, Z, dtype=s.dtype, backend=backend, activation=s.activation)
    model.load_params(s.params)
    opt = nv.Adam(model.num_params, s.dtype, lr=s.lr, backend=backend)
    X, E, how = s.X, s.E, s.objective_kwargs()
    chosen = [None]                              # None (before any start): as the environment

    def start(ranges):
        a, b = ranges[0]
        grads = model.new_grads()[1]             # the probe changes neither params nor Adam
        chosen[0], line = threads.resolve(
            threads.AUTO, lambda: lambda: model.loss_and_grads(X[a:b], E[:, a:b], grads, **how))
        return line

    def epoch(ranges):
        losses = np.empty(len(ranges))
        with threads.limited(chosen[0]):
            for i, (a, b) in enumerate(ranges):
                losses[i] = model.train_step(X[a:b], E[:, a:b], opt, **how)
        return losses
    return epoch, False, start


# ---------------------------------------------------------------------------------------------
# Torch

def need_torch():
    try:
        import torch                                        # an optional peer: Missing without it
    except ImportError:
        raise Missing(f"torch is not installed: {TORCH_HINT}") from None
    return torch


def torch_epoch(s, device, mode):
    """reference/model.py's network, trained on s.objective: the ELBO by reference.model's
    neg_elbo, the bound by neg_iwae_for_speed. mode "eager": torch.optim.Adam as a user writes
    it; "fused": Adam(fused=True); "compile": torch.compile of the loss (forward, and backward
    through AOTAutograd) + Adam(fused=True). Losses stay on the device until the epoch ends."""
    torch = need_torch()
    from reference.model import from_params, neg_elbo       # torch's peer, once torch is there
    if mode == "compile" and device == "cpu":
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            raise Missing("torch compile needs a C++ compiler for inductor's CPU kernels: "
                          "install g++ (e.g. apt-get install g++)")
    dev = torch.device(device)
    tdtype = torch.float32 if s.dtype == "float32" else torch.float64
    model = from_params(s.params, dtype=tdtype, device=dev, activation=s.activation)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, fused=True if mode != "eager" else None)
    Xt, Et = torch.from_numpy(s.X).to(dev), torch.from_numpy(s.E).to(dev)   # (N, D), (K, N, Z)

    if s.objective == "elbo":
        def loss_fn(x, eps):
            return neg_elbo(model, x, eps)[0]
    else:
        def loss_fn(x, eps):
            return neg_iwae_for_speed(torch, model, x, eps, s.estimator)
    if mode == "compile":
        # one static graph per batch shape (the last partial batch gets its own)
        loss_fn = torch.compile(loss_fn, dynamic=False, fullgraph=True)

    def epoch(ranges):
        losses = []
        for a, b in ranges:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(Xt[a:b], Et[:, a:b])
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        return torch.stack(losses).double().cpu().numpy()      # (steps,); waits for the device
    return epoch


def neg_iwae_for_speed(torch, model, x, eps, estimator):
    """−Σ_b L_K for x (B, D), eps (K, B, Z), as one writes it in Torch for speed: one decoder
    pass, float32 sums, and the estimator's gradient left to the one backward of the loss.
    (reference.model.neg_iwae is the same bound written to be read. This one is checked against
    numpyvae's float64 oracle by the benchmark's validation, and gradient by gradient in
    tests/system/test_benchmark.py.)

        s_i = log p(x|z_i) + log p(z_i) − log q(z_i|x)
            = −BCE(ℓ_i, x) + ½ Σ_j [((z_ij − μ_j)/σ_j)² − z_ij² + log σ_j²]    (the 2π's cancel)

    standard: with μ, log σ² live, log q's (z − μ)/σ is ε and its gradient is the total one.
    stl: μ, log σ² detached inside log q (Roeder et al. 2017); −logsumexp's gradient then is
    STL's. dreg: the same, and the gradient reaching z scaled by w̃ = softmax(s) once more
    (Tucker et al. 2019: w̃² on the path, w̃ on the decoder), by a hook on z."""
    K = eps.shape[0]
    mean, log_var = model.Encoder(x)                                       # (B, Z)
    z = mean + torch.exp(0.5 * log_var) * eps                              # (K, B, Z)
    logits = model.Decoder.logits(z)                                       # (K, B, D)
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)             # (K, B)
    if estimator == "standard":
        scaled = eps
        log_var_q = log_var
    else:
        log_var_q = log_var.detach()
        scaled = (z - mean.detach()) * torch.exp(-0.5 * log_var_q)
    s = log_px + 0.5 * (scaled * scaled - z * z + log_var_q).sum(-1)       # (K, B)
    if estimator == "dreg":
        w = torch.softmax(s.detach(), 0).unsqueeze(-1)                     # (K, B, 1)
        z.register_hook(lambda g: g * w)
    return -(torch.logsumexp(s, 0) - math.log(K)).sum()


def forget_compiled():
    """Drop the code torch.compile made for earlier peers. Dynamo keeps it per Python code
    object, and after 8 recompiles of one (torch._dynamo.config.recompile_limit) it silently
    runs that function eagerly, so a sweep, which builds a new `torch compile` peer at every
    size, calls this between sizes, once the earlier peers are no longer used."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "_dynamo"):
        torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------
# JAX

def need_jax(dtype):
    try:
        import jax                                          # an optional peer: Missing without it
    except ImportError:
        raise Missing(f"jax is not installed: {JAX_HINT}") from None
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return jax


def jax_loss_and_grads(jax, s):
    """(params, x (B, D), eps (K, B, Z)) -> (loss, {name: gradient}) in jax, on s.objective
    with s.activation: the ELBO's gradient by jax.value_and_grad, the bound's by jax.vjp
    (iwae_loss_and_grads)."""
    jnp = jax.numpy

    if s.activation == "tanh":
        act = jnp.tanh
    else:
        def act(a):
            return jnp.where(a > 0, a, SLOPE * a)     # torch's LeakyReLU: slope also at 0

    def linear(p, layer, h):
        return h @ p[layer + ".weight"].T + p[layer + ".bias"]    # torch (out, in) layout

    def encode(p, x):
        h = act(linear(p, "Encoder.FC_enc1", x))                  # (B, H)
        h = act(linear(p, "Encoder.FC_enc2", h))                  # (B, H)
        return linear(p, "Encoder.FC_mean", h), linear(p, "Encoder.FC_std", h)   # (B, Z) ×2

    def decode(p, z):
        g = act(linear(p, "Decoder.FC_dec1", z))                  # (K, B, H)
        g = act(linear(p, "Decoder.FC_dec2", g))                  # (K, B, H)
        return linear(p, "Decoder.FC_output", g)                  # (K, B, D)

    def neg_log_px(logits, x):
        # −log Bernoulli(x | sigmoid ℓ) = softplus(ℓ) − x ℓ, summed over pixels   (K, B)
        return jnp.sum(jax.nn.softplus(logits) - x * logits, -1)

    def neg_elbo(p, x, eps):
        mean, log_var = encode(p, x)                              # (B, Z)
        z = mean + jnp.exp(0.5 * log_var) * eps                   # (K, B, Z)
        recon = jnp.sum(neg_log_px(decode(p, z), x)) / eps.shape[0]
        # −KL(q||p) = 1/2 Σ (1 + log σ² − μ² − σ²)   (Kingma & Welling 2014, App. B)
        kl = -0.5 * jnp.sum(1 + log_var - mean * mean - jnp.exp(log_var))
        return recon + kl

    def log_weights(dec, x, z, mean, log_var):
        """s = log p(x|z) + log p(z) − log q(z|x)   (K, B); the 2π's cancel."""
        scaled = (z - mean) * jnp.exp(-0.5 * log_var)                            # (K, B, Z)
        return -neg_log_px(decode(dec, z), x) + 0.5 * jnp.sum(
            scaled * scaled - z * z + log_var, -1)

    def iwae_loss_and_grads(p, x, eps):
        """(−Σ_b L_K, its gradients by s.estimator): the chain rule spelt out with jax.vjp,
        so that each estimator keeps or drops its terms with one decoder pass."""
        enc = {k: v for k, v in p.items() if k.startswith("Encoder.")}
        dec = {k: v for k, v in p.items() if k.startswith("Decoder.")}
        (mean, log_var), enc_vjp = jax.vjp(lambda e: encode(e, x), enc)          # (B, Z) ×2
        std = jnp.exp(0.5 * log_var)
        z = mean + std * eps                                                     # (K, B, Z)
        s_, s_vjp = jax.vjp(lambda d, z, m, lv: log_weights(d, x, z, m, lv),
                            dec, z, mean, log_var)                               # (K, B)
        lse = jax.nn.logsumexp(s_, 0)                                            # (B,)
        w = jnp.exp(s_ - lse)                                                    # w̃ (K, B)
        g_dec, g_z, g_mean, g_log_var = s_vjp(-w)         # ∂(−logsumexp)/∂s = −w̃
        if s.estimator == "dreg":
            g_z = g_z * w[..., None]                      # the path's w̃² (Tucker et al. 2019)
        if s.estimator == "standard":                     # log q's direct terms kept
            g_mean = g_mean + g_z.sum(0)
            g_log_var = g_log_var + 0.5 * jnp.sum(g_z * eps * std, 0)
        else:                                             # dropped (stl, dreg)
            g_mean, g_log_var = g_z.sum(0), 0.5 * jnp.sum(g_z * eps * std, 0)
        (g_enc,) = enc_vjp((g_mean, g_log_var))
        loss = -jnp.sum(lse - math.log(eps.shape[0]))
        return loss, {**g_enc, **g_dec}

    return jax.value_and_grad(neg_elbo) if s.objective == "elbo" else iwae_loss_and_grads


def jax_step(jax, s):
    """step((params, m, v, t), (x, eps)) -> (state, loss): one training step in jax, the loss
    and gradients by jax_loss_and_grads and Adam with torch.optim.Adam's semantics."""
    jnp = jax.numpy
    b1, b2 = BETAS
    lr = s.lr
    loss_and_grads = jax_loss_and_grads(jax, s)

    def step(state, batch):
        p, m, v, t = state
        loss, g = loss_and_grads(p, *batch)
        t = t + 1
        # m ← m + (1−β₁)(g − m);  v ← β₂ v + (1−β₂) g²;
        # p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)        (torch.optim.Adam)
        m = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        # 1 − βᵗ as −expm1(t log β): in float32, 1 − 0.999ᵗ would lose 4 digits to cancellation
        # (torch computes it in float64 on the host)
        step_size = lr / -jnp.expm1(t * math.log(b1))
        root2 = jnp.sqrt(-jnp.expm1(t * math.log(b2)))
        p = jax.tree.map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root2 + ADAM_EPS),
                         p, m, v)
        return (p, m, v, t), loss
    return step


def jax_epoch(s, scan):
    """scan=False: a Python loop over jax.jit(step); scan=True: the epoch's full batches
    stacked (S, B, D) on the device and run by one jitted jax.lax.scan. The state's buffers
    are donated, so parameters and moments are updated in place."""
    jax = need_jax(s.dtype)
    jnp = jax.numpy
    params = {k: jnp.asarray(v) for k, v in s.params.items()}
    m, v = ({k: jnp.zeros_like(p) for k, p in params.items()} for _ in range(2))
    state = (params, m, v, jnp.zeros((), s.dtype))                    # t as a float
    step = jax_step(jax, s)
    step_jit = jax.jit(step, donate_argnums=0)
    scan_jit = jax.jit(lambda state, xs, es: jax.lax.scan(step, state, (xs, es)),
                       donate_argnums=0)
    X, E = s.X, s.E
    batch_cache, stack_cache = {}, {}

    def batch(a, b):                           # preloaded once, like the stacked epoch
        if (a, b) not in batch_cache:
            batch_cache[a, b] = jnp.asarray(X[a:b]), jnp.asarray(E[:, a:b])  # (B, D), (K, B, Z)
        return batch_cache[a, b]

    def stacked(ranges):
        """The full batches of `ranges` as (S, B, D) and (S, K, B, Z), and the rest."""
        key = tuple(ranges)
        if key not in stack_cache:
            B = max(b - a for a, b in ranges)
            full = [(a, b) for a, b in ranges if b - a == B]
            rest = [(a, b) for a, b in ranges if b - a != B]
            if ranges[:len(full)] != full:
                raise ValueError("jax scan-epoch needs its full batches first")
            xs = jnp.asarray(np.stack([X[a:b] for a, b in full]))            # (S, B, D)
            es = jnp.asarray(np.stack([E[:, a:b] for a, b in full]))         # (S, K, B, Z)
            stack_cache[key] = xs, es, rest
        return stack_cache[key]

    def epoch(ranges):
        nonlocal state
        losses = []
        if scan:
            xs, es, rest = stacked(ranges)
            state, scanned = scan_jit(state, xs, es)                        # (S,)
            losses.append(scanned)
        else:
            rest = ranges
        for a, b in rest:
            state, loss = step_jit(state, batch(a, b))
            losses.append(loss[None])
        return np.asarray(jnp.concatenate(losses), np.float64)     # (steps,); waits for XLA
    return epoch


# ---------------------------------------------------------------------------------------------
# the GEMM floors

def gemm_floor_epoch(hidden, latent, dtype, library="numpy", samples=1):
    """The step's matrix products alone (the decoder's on samples·B rows), into preallocated
    outputs, for each batch size:
    in NumPy (OpenBLAS), the floor of numpyvae's design, or in Torch on the CPU (its own
    BLAS, MKL on x86), which says how much of Torch's epoch is matrix products. NumPy's in the
    layout the numba step gives each (fused.few_rows; its transposed copies, elementwise
    work, are not in the floor), Torch's in nn.Linear's (a·Wᵀ)."""
    rng = np.random.default_rng(0)
    cache = {}
    few_rows = fused.few_rows(dtype) if library == "numpy" else 0
    if library == "torch":
        torch = need_torch()
        matmul, wrap = torch.matmul, torch.from_numpy
    else:
        matmul, wrap = np.matmul, (lambda a: a)

    def mats(B):
        if B not in cache:
            def operand(rows, cols, transposed):        # a `.T` view where the step has one
                a = rng.standard_normal((cols, rows) if transposed else (rows, cols))
                a = wrap(a.astype(dtype))
                return a.T if transposed else a
            cache[B] = [(operand(m, k, ta), operand(k, n, tb), wrap(np.empty((m, n), dtype)))
                        for m, k, n, ta, tb in matmul_shapes(B, D, hidden, latent, samples,
                                                               few_rows=few_rows)]
        return cache[B]

    def epoch(ranges):
        for a, b in ranges:
            for A, Bm, C in mats(b - a):
                matmul(A, Bm, out=C)
    return epoch


def log_likelihood_floor(params, n_images, dtype, rows=LL_ROWS):
    """k -> None: the matrix products of numpyvae.likelihood.log_likelihood(…, k) on n_images
    alone, into preallocated outputs — the encoder's once, then the decoder's three for each
    chunk of rows // n_images samples per image, as the numba path draws them — in NumPy
    (OpenBLAS).
    The floor of the evaluation: everything else it does is elementwise."""
    rng = np.random.default_rng(0)
    p = {k: np.asarray(v, dtype) for k, v in params.items()}
    H, Z = hidden_latent(p)
    chunk = max(1, rows // n_images)
    x = rng.random((n_images, D)).astype(dtype)                           # (B, D)
    enc = [np.empty((n_images, H), dtype), np.empty((n_images, H), dtype),
           np.empty((n_images, Z), dtype), np.empty((n_images, Z), dtype)]
    z = rng.standard_normal((chunk * n_images, Z)).astype(dtype)          # (N, Z)
    g1, g2 = np.empty((len(z), H), dtype), np.empty((len(z), H), dtype)   # (N, H)
    logits = np.empty((len(z), D), dtype)                                 # (N, D)

    def run(k):
        mm = np.matmul
        mm(x, p["Encoder.FC_enc1.weight"].T, out=enc[0])
        mm(enc[0], p["Encoder.FC_enc2.weight"].T, out=enc[1])
        mm(enc[1], p["Encoder.FC_mean.weight"].T, out=enc[2])
        mm(enc[1], p["Encoder.FC_std.weight"].T, out=enc[3])
        for done in range(0, k, chunk):
            N = min(chunk, k - done) * n_images
            mm(z[:N], p["Decoder.FC_dec1.weight"].T, out=g1[:N])
            mm(g1[:N], p["Decoder.FC_dec2.weight"].T, out=g2[:N])
            mm(g2[:N], p["Decoder.FC_output.weight"].T, out=logits[:N])
    return run
