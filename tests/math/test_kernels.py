"""The numba kernels (numpyvae/kernels.py), each against two oracles: its own un-jitted Python
(`kernel.py_func`, which shows the jitting changed nothing) and a NumPy expression of the same
formula (numpyvae's NumPy path, or data.py for the batches).

Tolerances, stated once (rel_err from checks.py: max |Δ| / max |ref| per array):
- JIT vs py_func: the same operations in the same order. float64: 1e-15 (LLVM may contract
  nothing — no fastmath — but libm calls can differ from Python's math by an ulp); float32
  kernels: 1e-6 (the interpreter evaluates mixed float32/float64 scalar expressions in float64,
  the JIT in float32: a few float32 ulps).
- kernel vs NumPy: float64 1e-13 (different summation orders over ≤ 1000 terms); float32 1e-6
  for elementwise results (the float32 exp/log1p polynomials are within a few ulps of libm,
  ulp = 6e-8), and 1e-6 for float64-accumulated sums that NumPy accumulates in float32.
- Adam: NumPy divides by √(1−β₂ᵗ) in float64, the kernel multiplies by its reciprocal — one
  rounding apart per step; 1e-6 (float32) / 1e-13 (float64) after 50 steps.
A planted 1e-6 error shows the float64 check rejects it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from checks import rel_err
from numpyvae import data, kernels, likelihood
from numpyvae.oracle.activations import leaky_relu, leaky_relu_backward, sigmoid, tanh, tanh_backward
from numpyvae.adam import Adam
from numpyvae.oracle.loss import bernoulli_nll, gaussian_kl

TOL_JIT = {np.float64: 1e-15, np.float32: 1e-6}
TOL_NUMPY = {np.float64: 1e-13, np.float32: 1e-6}
DTYPES = [np.float64, np.float32]


def both(kernel, *args):
    """Run the jitted kernel and its py_func on separate copies of the array arguments."""
    copies = [[a.copy() if isinstance(a, np.ndarray) else a for a in args] for _ in range(2)]
    r_jit = kernel(*copies[0])
    r_py = kernel.py_func(*copies[1])
    return (r_jit, copies[0]), (r_py, copies[1])


def assert_close(ours, ref, tol, what):
    err = rel_err(ours, ref)
    assert err <= tol, f"{what}: rel err {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_into(dtype):
    """A copy: the same bits as NumPy's a.T, jitted or not (oracle: NumPy's transpose)."""
    a = np.random.default_rng(0).standard_normal((23, 37)).astype(dtype)
    (_, (_, jit)), (_, (_, py)) = both(kernels.transpose_into, a, np.empty((37, 23), dtype))
    np.testing.assert_array_equal(jit, a.T)
    np.testing.assert_array_equal(py, a.T)
    with pytest.raises(ValueError, match="transpose_into"):
        kernels.transpose_into(a, np.empty((23, 37), dtype))     # numba checks no bounds


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_leaky_relu(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 23)).astype(dtype)
    b = rng.standard_normal(23).astype(dtype)
    slope = dtype(0.2)
    (_, (jit, *_)), (_, (py, *_)) = both(kernels.bias_leaky_relu, a, b, slope)
    assert_close(jit, py, 0, "jit vs py_func")                  # elementwise, same arithmetic
    assert_close(jit, leaky_relu(a + b), 0, "vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_backward_bias(dtype):
    rng = np.random.default_rng(1)
    d = rng.standard_normal((41, 19)).astype(dtype)
    h = leaky_relu(rng.standard_normal((41, 19)).astype(dtype))
    db = np.empty(19, dtype)
    (_, (dj, _, _, dbj)), (_, (dp, _, _, dbp)) = both(kernels.leaky_relu_backward_bias,
                                                      d, h, dtype(0.2), db)
    ref = leaky_relu_backward(d, h)          # h > 0 ⟺ its input > 0
    assert_close(dj, dp, 0, "d: jit vs py_func")
    assert_close(dj, ref, 0, "d vs NumPy")
    assert_close(dbj, dbp, TOL_JIT[dtype], "db: jit vs py_func")
    assert_close(dbj, ref.sum(axis=0), TOL_NUMPY[dtype], "db vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_tanh(dtype):
    """float64: libm's tanh, an ulp at most from NumPy's own (measured 2.2e-16). float32: the
    polynomial tanh_f32, within 1e-6 (a few ulps of values ≤ 1) of NumPy's float32 tanh."""
    rng = np.random.default_rng(2)
    a = (3 * rng.standard_normal((37, 23))).astype(dtype)
    b = rng.standard_normal(23).astype(dtype)
    kernel = kernels.bias_tanh_f32 if dtype == np.float32 else kernels.bias_tanh
    (_, (jit, _)), (_, (py, _)) = both(kernel, a, b)
    assert_close(jit, py, TOL_JIT[dtype], "jit vs py_func")
    assert_close(jit, tanh(a + b), TOL_NUMPY[dtype], "vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_backward_bias(dtype):
    rng = np.random.default_rng(3)
    d = rng.standard_normal((41, 19)).astype(dtype)
    h = tanh(rng.standard_normal((41, 19)).astype(dtype))
    db = np.empty(19, dtype)
    (_, (dj, _, dbj)), (_, (dp, _, dbp)) = both(kernels.tanh_backward_bias, d, h, db)
    ref = tanh_backward(d, h)
    assert_close(dj, dp, 0, "d: jit vs py_func")
    assert_close(dj, ref, 0, "d vs NumPy")                  # same two roundings, same order
    assert_close(dbj, dbp, TOL_JIT[dtype], "db: jit vs py_func")
    assert_close(dbj, ref.sum(axis=0), TOL_NUMPY[dtype], "db vs NumPy")


def test_float32_tanh_within_a_few_ulps():
    """tanh_f32 against libm in float64 over [−12, 12] (tanh is ±1 to float32 beyond ±9),
    both sides of the switch at |a| = 0.3, tiny and infinite inputs: ≤ 3 float32 ulps of the
    result (2.1 measured), NaN kept."""
    a = np.concatenate([np.linspace(-12, 12, 400001),
                        [0.0, -0.0, 1e-30, -1e-30, 0.3, -0.3, 100.0, -100.0, np.inf, -np.inf]])
    a = np.concatenate([a.astype(np.float32), np.nextafter(np.float32([0.3, -0.3]), 0)])
    got = np.empty((1, a.size), np.float32)
    got[0] = a
    kernels.bias_tanh_f32(got, np.zeros(a.size, np.float32))
    ref = np.tanh(a.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got[0] - ref) / ulp) <= 3
    assert np.isnan(kernels.tanh_f32(np.float32(np.nan)))
    assert np.signbit(kernels.tanh_f32(np.float32(-0.0)))          # tanh(−0) = −0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L", [1, 3])
def test_reparameterize_and_backward(dtype, L):
    rng = np.random.default_rng(2)
    B, Z = 13, 5
    mu0, lv0 = (rng.standard_normal((B, Z)).astype(dtype) for _ in range(2))
    bm, bv = (rng.standard_normal(Z).astype(dtype) for _ in range(2))
    eps = rng.standard_normal((L, B, Z)).astype(dtype)
    sigma, z = np.empty((B, Z), dtype), np.empty((L, B, Z), dtype)
    (klj, (muj, _, lvj, _, _, sj, zj)), (klp, (_, _, _, _, _, sp, zp)) = both(
        kernels.reparameterize, mu0, bm, lv0, bv, eps, sigma, z)
    mu, lv = mu0 + bm, lv0 + bv
    ref_sigma = np.exp(0.5 * lv)
    assert_close(zj, zp, TOL_JIT[dtype], "z: jit vs py_func")
    assert_close(sj, ref_sigma, TOL_NUMPY[dtype], "sigma vs NumPy")
    assert_close(zj, mu + ref_sigma * eps, TOL_NUMPY[dtype], "z vs NumPy")
    assert abs(klj - klp) <= 1e-13 * abs(klp)
    ref_kl = gaussian_kl(mu.astype(np.float64), lv.astype(np.float64)).sum()
    assert abs(klj - ref_kl) <= TOL_NUMPY[dtype] * abs(ref_kl)

    dz = rng.standard_normal((L, B, Z)).astype(dtype)
    outs = [np.empty((B, Z), dtype), np.empty((B, Z), dtype), np.empty(Z, dtype), np.empty(Z, dtype)]
    (_, rj), (_, rp) = both(kernels.reparameterize_backward, dz, eps, muj, lvj, sj, *outs)
    ref_dmu = dz.sum(axis=0) + muj                                       # model.backward's
    ref_dlv = (dz * eps).sum(axis=0) * (0.5 * sj) + 0.5 * (np.exp(lvj) - 1)
    for got, py, ref, what in ((rj[5], rp[5], ref_dmu, "dmu"), (rj[6], rp[6], ref_dlv, "dlogvar"),
                               (rj[7], rp[7], ref_dmu.sum(0), "db_mu"),
                               (rj[8], rp[8], ref_dlv.sum(0), "db_logvar")):
        assert_close(got, py, TOL_JIT[dtype], f"{what}: jit vs py_func")
        assert_close(got, ref, TOL_NUMPY[dtype], f"{what} vs NumPy")


def logits_case(dtype, N=50, B=25, D=31, grey=False, seed=3):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((N, D)) * 6).astype(dtype)
    a[0, :6] = [0, -0.0, 40, -40, 100, -100]                  # exact zero, far tails, clamp
    b = rng.standard_normal(D).astype(dtype)
    x = rng.random((B, D))
    x = (x if grey else np.round(x)).astype(dtype)
    return a, b, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grey", [False, True])
def test_bernoulli_logits(dtype, grey):
    a, b, x = logits_case(dtype, grey=grey)
    N, D = a.shape
    L = N // x.shape[0]
    kernel = kernels.bernoulli_logits_f32 if dtype == np.float32 else kernels.bernoulli_logits
    args = (a, b, x, dtype(1.0 / L), np.empty(D, dtype), np.empty(D), np.empty(D, dtype))
    (lj, (gj, _, _, _, dbj, _, _)), (lp, (gp, _, _, _, dbp, _, _)) = both(kernel, *args)
    ell = (a + b).astype(np.float64)                                    # (N, D)
    xr = np.tile(x, (L, 1)).astype(np.float64)                          # row r ↔ image r % B
    ref_loss = bernoulli_nll(ell, xr).sum()
    ref_g = (sigmoid(ell) - xr) / L
    assert abs(lj - lp) <= TOL_JIT[dtype] * abs(lp)
    assert abs(lj - ref_loss) <= TOL_NUMPY[dtype] * abs(ref_loss), (lj, ref_loss)
    assert_close(gj, gp, TOL_JIT[dtype], "dlogits: jit vs py_func")
    assert_close(gj, ref_g, TOL_NUMPY[dtype], "dlogits vs NumPy")
    assert_close(dbj, ref_g.sum(axis=0), TOL_NUMPY[dtype], "db vs NumPy")


def test_bernoulli_logits_f32_propagates_nan():
    a, b, x = logits_case(np.float32)
    a[3, 4] = np.nan
    g = a.copy()
    loss = kernels.bernoulli_logits_f32(g, b, x, np.float32(0.5), np.empty(31, np.float32),
                                        np.empty(31), np.empty(31, np.float32))
    assert np.isnan(loss) and np.isnan(g[3, 4]) and np.isfinite(np.delete(g.ravel(), 3 * 31 + 4)).all()


def test_float32_exp_and_log1p_within_a_few_ulps():
    """The polynomials behind the float32 kernels, over their whole range, against libm in
    float64: relative error ≤ 4 float32 ulps (2.4e-7)."""
    t = np.concatenate([np.linspace(0, 87, 200001), [0.5 * np.log(2), 1e-30]]).astype(np.float32)
    e = np.array([kernels.exp_neg_f32(v) for v in t[::50]], np.float64)
    ref = np.exp(-t[::50].astype(np.float64))
    assert np.max(np.abs(e - ref) / ref) <= 2.4e-7
    u = np.exp(-np.linspace(0, 87, 4001)).astype(np.float32)
    got = np.array([kernels.log1p_f32(v) for v in u], np.float64)
    ref = np.log1p(u.astype(np.float64))
    assert np.max(np.abs(got - ref) / ref) <= 2.4e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first", [0, 7])
def test_bernoulli_loglik_rows(dtype, first):
    """Rows first, first + 1, … of samples × images: row r's image is x[(first + r) % B]."""
    a, b, x = logits_case(dtype, N=75, B=25)
    out = np.empty(75)
    if dtype == np.float32:
        args = (a, b, x, out, first, np.empty(31, dtype))
        kernel = kernels.bernoulli_loglik_rows_f32
    else:
        args, kernel = (a, b, x, out, first), kernels.bernoulli_loglik_rows
    (_, rj), (_, rp) = both(kernel, *args)
    ell = (a + b).astype(np.float64)
    images = np.roll(np.tile(x, (4, 1)), -first, axis=0)[:75].astype(np.float64)
    ref = -bernoulli_nll(ell, images).sum(axis=1)
    assert_close(rj[3], rp[3], TOL_JIT[dtype], "jit vs py_func")
    assert_close(rj[3], ref, TOL_NUMPY[dtype], "vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first", [0, 7])
def test_sample_log_ratio(dtype, first):
    """Rows first, first + 1, … of samples × images against the oracle log_weights' NumPy
    expressions: z = μ + σ ε bit for bit (the same two roundings), and log p(z) − log q(z|x)
    (theirs with the log 2π terms that cancel)."""
    rng = np.random.default_rng(4)
    B, Z, N = 25, 5, 75
    mu, sigma = rng.standard_normal((B, Z)).astype(dtype), rng.random((B, Z)).astype(dtype)
    sum_logvar = np.log(np.square(sigma, dtype=np.float64)).sum(axis=1)      # (B,)
    eps = rng.standard_normal((N, Z)).astype(dtype)
    (_, rj), (_, rp) = both(kernels.sample_log_ratio, mu, sigma, sum_logvar, eps, first,
                            np.empty((N, Z), dtype), np.empty(N))
    i = (first + np.arange(N)) % B                                          # row r's image
    z = mu[i] + sigma[i] * eps                                              # (N, Z)
    log_pz = -0.5 * (np.square(z, dtype=np.float64).sum(axis=1) + Z * likelihood.LOG_2PI)
    log_qz = -0.5 * (np.square(eps, dtype=np.float64).sum(axis=1) + Z * likelihood.LOG_2PI
                     + sum_logvar[i])
    assert np.array_equal(rj[5], z) and np.array_equal(rp[5], z)
    assert_close(rj[6], rp[6], TOL_JIT[dtype], "jit vs py_func")
    assert_close(rj[6], log_pz - log_qz, TOL_NUMPY[dtype], "vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_kernel_equals_numpy_adam(dtype):
    rng = np.random.default_rng(4)
    P = 1001
    p0 = rng.standard_normal(P).astype(dtype)
    ours, ref = Adam(P, dtype, lr=3e-3, backend="numba"), Adam(P, dtype, lr=3e-3,
                                                                        backend="numpy")
    p_ours, p_ref = p0.copy(), p0.copy()
    for _ in range(50):
        g = rng.standard_normal(P).astype(dtype)
        ours.step(p_ours, g)
        ref.step(p_ref, g)
    tol = TOL_NUMPY[dtype]
    assert_close(p_ours - p0, p_ref - p0, tol, "parameter change")
    assert_close(ours.m, ref.m, TOL_JIT[dtype], "m")            # same arithmetic for m and v
    assert_close(ours.v, ref.v, TOL_JIT[dtype], "v")
    assert ours.t == ref.t == 50


@pytest.mark.parametrize("mode", ["threshold", "dynamic", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_binarize_equals_data_batch_into(mode, dtype):
    """Same numbers as numpyvae.data.batch_into, bit for bit, given the same uniforms."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (300, 784), dtype=np.uint8)
    images[0, :4] = [0, 127, 128, 255]
    idx = rng.permutation(300)[:96]
    ref = data.batch_into(images, idx, mode, np.random.default_rng(6), np.empty((128, 784), dtype))
    u = np.empty((0, 784), dtype)                              # read only when dynamic
    if mode == "dynamic":
        u = np.empty((96, 784), dtype)
        np.random.default_rng(6).random(out=u, dtype=dtype)    # the draw batch_into makes
    out = np.empty((128, 784), dtype)
    code = kernels.BINARIZE_CODES[mode]
    got = kernels.gather_binarize(images, idx, code, u, out)
    assert got.shape == (96, 784) and np.shares_memory(got, out)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(kernels.gather_binarize.py_func(images, idx, code, u,
                                                                  np.empty_like(out)), ref)


def test_gather_binarize_rejects_bad_input():
    images = np.zeros((10, 784), np.uint8)
    out = np.empty((4, 784), np.float32)
    with pytest.raises(IndexError):
        kernels.gather_binarize(images, np.array([0, 10]), kernels.THRESHOLD, out[:0], out)
    with pytest.raises(ValueError):
        kernels.gather_binarize(images, np.array([0, 1]), kernels.DYNAMIC, out[:1], out)


def test_bernoulli_loglik_rows_f32_train_is_the_same_source():
    """Training's float32 log p(x|z) rows: bernoulli_loglik_rows_f32's source, jitted without
    contraction, against its py_func and NumPy as that kernel is."""
    a, b, x = logits_case(np.float32, N=75, B=25)
    assert kernels.bernoulli_loglik_rows_f32_train.py_func.__code__ is \
        kernels.bernoulli_loglik_rows_f32.py_func.__code__
    (_, rj), (_, rp) = both(kernels.bernoulli_loglik_rows_f32_train, a, b, x, np.empty(75), 0,
                            np.empty(31, np.float32))
    ref = -bernoulli_nll((a + b).astype(np.float64), np.tile(x, (3, 1)).astype(np.float64)).sum(1)
    assert_close(rj[3], rp[3], TOL_JIT[np.float32], "jit vs py_func")
    assert_close(rj[3], ref, TOL_NUMPY[np.float32], "vs NumPy")


# Two fresh processes, each with a numba cache of its own: what the training kernel computes
# must not depend on whether the evaluation kernel (the same source, with FMA contraction) was
# compiled into the cache before it.
CACHE_CHILD = """
import sys
import numpy as np
from numpyvae.fast import kernels
rng = np.random.default_rng(0)
a = (rng.standard_normal((7, 784)) * 3).astype(np.float32)
b = rng.standard_normal(784).astype(np.float32)
x = (rng.random((7, 784)) < 0.5).astype(np.float32)
for name in sys.argv[1:]:
    out = np.empty(7)
    getattr(kernels, name)(a, b, x, out, 0, np.empty(784, np.float32))
print(out.tobytes().hex())
"""


def training_rows_bits(cache, *names):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-c", CACHE_CHILD, *names], capture_output=True,
                          text=True, env=env, timeout=300, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_training_rows_are_not_the_evaluation_kernel_from_the_cache(tmp_path):
    """Oracle: the training kernel compiled alone. Compiled after the evaluation kernel into
    the same cache it gives the same bits (the evaluation kernel, whose FMAs round otherwise,
    gives others here: the planted case, which the comparison sees)."""
    train = "bernoulli_loglik_rows_f32_train"
    alone = training_rows_bits(tmp_path / "a", train)
    after = training_rows_bits(tmp_path / "b", "bernoulli_loglik_rows_f32", train)
    evaluation = training_rows_bits(tmp_path / "c", "bernoulli_loglik_rows_f32")
    assert after == alone
    assert evaluation != alone


def test_iwae_weights_and_row_sums():
    """The softmax of each image's K rows and Σ L_K, against scipy's logsumexp (float64)."""
    rng = np.random.default_rng(12)
    K, B = 5, 7
    log_px, ratio = -500 + 30 * rng.standard_normal(K * B), rng.standard_normal(K * B)
    for dtype in DTYPES:
        (tj, (_, _, wj)), (tp, (_, _, wp)) = both(kernels.iwae_weights, log_px, ratio,
                                                  np.empty((K, B), dtype))
        s = (log_px + ratio).reshape(K, B)
        assert abs(tj - tp) <= 1e-15 * abs(tp)
        assert abs(tj - (logsumexp(s, axis=0) - np.log(K)).sum()) <= 1e-13 * abs(tj)
        assert_close(wj, wp, TOL_JIT[dtype], "jit vs py_func")
        assert_close(wj, softmax(s, axis=0), TOL_NUMPY[dtype], "vs scipy")
    a = rng.standard_normal((6, 9)).astype(np.float32)
    (_, (_, sj)), (_, (_, sp)) = both(kernels.row_sums, a, np.empty(6))
    assert_close(sj, a.astype(np.float64).sum(axis=1), 1e-15, "row sums")
    assert np.array_equal(sj, sp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bernoulli_weighted_grad(dtype):
    a, b, x = logits_case(dtype, N=75, B=25)
    w = np.random.default_rng(13).random(75).astype(dtype)
    D = a.shape[1]
    if dtype == np.float32:
        kernel, args = kernels.bernoulli_weighted_grad_f32, (a, b, x, w, np.empty(D, dtype),
                                                             np.empty(D, dtype))
    else:
        kernel, args = kernels.bernoulli_weighted_grad, (a, b, x, w, np.empty(D, dtype))
    (_, (gj, _, _, _, dbj, *_)), (_, (gp, *_)) = both(kernel, *args)
    ell = (a + b).astype(np.float64)
    ref = (sigmoid(ell) - np.tile(x, (3, 1))) * w[:, None]
    assert_close(gj, gp, TOL_JIT[dtype], "jit vs py_func")
    assert_close(gj, ref, TOL_NUMPY[dtype], "vs NumPy")
    assert_close(dbj, ref.sum(axis=0), TOL_NUMPY[dtype], "db vs NumPy")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["standard", "stl", "dreg"])
def test_iwae_reparameterize_backward(dtype, estimator):
    """dμ, dv and their column sums against numpyvae/oracle/iwae.py's NumPy lines."""
    rng = np.random.default_rng(14)
    K, B, Z = 5, 6, 4
    dz, eps = (rng.standard_normal((K, B, Z)).astype(dtype) for _ in range(2))
    mu, sigma = rng.standard_normal((B, Z)).astype(dtype), (0.5 + rng.random((B, Z))).astype(dtype)
    z = (mu + sigma * eps).astype(dtype)
    w = rng.dirichlet(np.ones(K), size=B).T.astype(dtype)                  # (K, B)
    code = kernels.ESTIMATOR_CODES[estimator]
    args = (dz, eps, z, w, sigma, code, *(np.empty((B, Z), dtype) for _ in range(2)),
            np.empty(Z, dtype), np.empty(Z, dtype))
    (_, rj), (_, rp) = both(kernels.iwae_reparameterize_backward, *args)
    d = dz.astype(np.float64) + w[..., None] * z                          # (K, B, Z)
    c = {"standard": 0 * w, "stl": w, "dreg": w * w}[estimator][..., None]
    p = d if estimator != "dreg" else d * w[..., None]
    p = p - c * eps / sigma
    dmu = p.sum(axis=0)
    dv = (p * eps).sum(axis=0) * (0.5 * sigma) - (0.5 if estimator == "standard" else 0)
    for i, (ref, name) in enumerate([(dmu, "dmu"), (dv, "dlogvar"), (dmu.sum(0), "db_mu"),
                                     (dv.sum(0), "db_logvar")]):
        assert_close(rj[6 + i], rp[6 + i], TOL_JIT[dtype], f"{name}: jit vs py_func")
        assert_close(rj[6 + i], ref, TOL_NUMPY[dtype], f"{name} vs NumPy")


def test_kernel_check_rejects_a_planted_error():
    """Planted error: a bias+LeakyReLU whose output is off by 1e-6 in one entry must fail the
    float64 NumPy comparison above."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((20, 10)), rng.standard_normal(10)
    got = a.copy()
    kernels.bias_leaky_relu(got, b, 0.2)
    got[3, 4] += 1e-6
    with pytest.raises(AssertionError):
        assert_close(got, leaky_relu(a + b), TOL_NUMPY[np.float64], "planted")


def subnormal(a):
    """How many entries of a are subnormal numbers of its dtype."""
    return int(((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)).sum())


def test_adam_flushes_subnormal_moments_and_no_parameter_moves():
    """Oracle: the same kernel told to flush nothing (tiny 0). Half the weights get a small
    gradient once (1e-30), then 0 for 200 steps, as a rarely lit pixel's do: their first
    moment decays ×0.9 a step through float32's subnormal range (below 1.2e-38). Flushed, no moment is subnormal and every
    parameter has the same bits as unflushed; the unflushed run (the planted error: no flush)
    does hold subnormal moments, so the check can fail. float64 is never flushed."""
    from numpyvae.fast.adam import flush_below
    rng = np.random.default_rng(5)
    P, f = 2001, np.float32
    p0 = rng.standard_normal(P).astype(f)
    even = np.arange(P) % 2 == 0
    g0 = (np.where(even, 1e-30, 1e-3) * rng.standard_normal(P)).astype(f)
    runs = {}
    for tiny in (flush_below(np.dtype(f)), f(0)):
        p, m, v = p0.copy(), np.zeros(P, f), np.zeros(P, f)
        for t in range(1, 202):
            g = g0 if t == 1 else np.where(even, f(0), g0)
            kernels.adam_step(p, g, m, v, f(0.1), f(0.999), f(0.001),
                              f(1 / np.sqrt(1 - 0.999 ** t)), f(1e-8), f(1e-3 / (1 - 0.9 ** t)),
                              tiny)
        runs[float(tiny)] = p, m, v
    (p, m, v), (p_ref, m_ref, v_ref) = runs[float(flush_below(np.dtype(f)))], runs[0.0]
    assert subnormal(m) == subnormal(v) == 0
    assert subnormal(m_ref) > 500                                   # the planted error shows
    assert np.array_equal(p, p_ref)                                 # bit for bit
    assert np.array_equal(m[m != 0], m_ref[m != 0]) and np.array_equal(v, v_ref)
    assert flush_below(np.dtype(np.float64)) == 0
