"""VAE(backend="numba") against VAE(backend="numpy"), the readable oracle (itself checked
against Torch autograd in test_parity_torch.py): same loss and same 14 gradients, by name.

Tolerances, stated once (rel_err from checks.py):
- float64: 1e-12. Same formulas, different summation orders and libm vs NumPy's exp: a few
  ulps (≈ 1e-15 measured).
- float32: 1e-5, the Torch-parity tolerance of test_parity_torch.py and for the same reason —
  unit roundoff 6e-8, reductions over up to L·B rows summed in different orders, and the fused
  path's float32 exp/log1p polynomials a few ulps from libm; ≈ 4e-7 measured. Float32 through
  LeakyReLU is compared away from its kink (checks.away_from_kinks): the two paths call
  OpenBLAS with different operand layouts, so a pre-activation within rounding of 0 may land
  on different branches, which is the kernel's choice, not a bug. A planted 1e-4 error in one
  float32 gradient entry is refused.
- The numba step with its forward products as W·aᵀ (fused.FusedStep's few_rows, which
  fused.few_rows turns on for float32 on OpenBLAS ≥ 0.3.27's SkylakeX and Cooperlake
  kernels) against the NumPy path: the same tolerances, forced on every CPU. Where
  fused.few_rows chooses it, against the usual way: 0, bit for bit (what it was chosen for:
  the float32 numbers do not move).
- The numba log-likelihood on several workers against itself on one: 0, bit for bit.
- The numba log-likelihood in its own chunks (fused.CHUNK_ROWS) against the NumPy path's
  (likelihood.ROWS), float64: 1e-9 nats of ~550, as the float64 log-likelihoods of the two
  paths — other chunks put other rows in each block, whose products round with their rows
  (in float32 by up to 7e-8 nats measured on Haswell, 3e-13 on SkylakeX), and the running
  log-sum-exp adds them in another order.
"""
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

import numpyvae as nv
from checks import assert_all_close, away_from_kinks, rel_err
from numpyvae import backend, likelihood, threads
from numpyvae.fast import fused, kernels
from numpyvae.fast.fused import FusedStep

TOL = {"float64": 1e-12, "float32": 1e-5}


def batch(rng, B, L, dtype, grey=False, Z=20, D=784):
    x = rng.random((B, D))
    x = (x if grey else np.round(x)).astype(dtype)
    eps = rng.standard_normal((L, B, Z) if L > 1 else (B, Z)).astype(dtype)
    return x, eps


def check_same(ours, ref, x, eps, tol):
    if x.dtype == np.float32 and ours.activation == "leaky_relu":
        x, eps = away_from_kinks(ours.params, x, eps)
    loss, grads = ours.loss_and_grads(x, eps, out=ours.new_grads()[1])
    ref_loss, ref_grads = ref.loss_and_grads(x, eps)
    assert isinstance(loss, float)
    assert abs(loss - ref_loss) <= tol * abs(ref_loss), (loss, ref_loss)
    assert_all_close(grads, ref_grads, tol, "numba vs numpy gradients")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_loss_and_gradients(dtype):
    """One numba model through growing, shrinking (the partial last batch) and L > 1."""
    ours = nv.VAE(dtype=dtype, seed=0, backend="numba")
    ref = nv.VAE(dtype=dtype, seed=0, backend="numpy")
    rng = np.random.default_rng(0)
    for B, L, grey in [(128, 1, False), (96, 1, False), (128, 3, False), (50, 2, True),
                       (200, 1, False), (1, 1, True)]:
        check_same(ours, ref, *batch(rng, B, L, dtype, grey), TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tanh_same_loss_and_gradients(dtype):
    """The burda2015 preset's network (tanh, Glorot, latent 50) at batch 20 and a few others."""
    ours = nv.VAE(784, 200, 50, dtype=dtype, seed=0, backend="numba", activation="tanh",
                  init="glorot")
    ref = nv.VAE(784, 200, 50, dtype=dtype, seed=0, activation="tanh", init="glorot",
                 backend="numpy")
    rng = np.random.default_rng(9)
    for B, L, grey in [(20, 1, False), (128, 2, False), (7, 1, True)]:
        check_same(ours, ref, *batch(rng, B, L, dtype, grey, Z=50), TOL[dtype])


def test_tanh_log_likelihood_backends_agree():
    """The fused importance weights with tanh units: same draws, same estimate (float64)."""
    models = [nv.VAE(dtype="float64", seed=0, backend=b, activation="tanh")
              for b in ("numba", "numpy")]
    x, _ = batch(np.random.default_rng(10), 5, 1, "float64")
    ests = [likelihood.log_likelihood(m, x, 200, np.random.default_rng(11), rows=300)
            for m in models]
    assert np.max(np.abs(ests[0] - ests[1])) <= 1e-9, ests


def test_small_shapes_and_default_out():
    ours = nv.VAE(7, 5, 3, dtype="float64", seed=3, backend="numba")
    ref = nv.VAE(7, 5, 3, dtype="float64", seed=3, backend="numpy")
    x, eps = batch(np.random.default_rng(1), 9, 2, "float64", True, Z=3, D=7)
    loss, grads = ours.loss_and_grads(x, eps)                    # no out: a fresh dict
    ref_loss, ref_grads = ref.loss_and_grads(x, eps)
    assert abs(loss - ref_loss) <= 1e-12 * abs(ref_loss)
    assert_all_close(grads, ref_grads, 1e-12, "small net")


def test_few_rows_follows_the_measured_kernels(monkeypatch):
    """fused.few_rows against the table it encodes (the kernels and versions measured)."""
    def blas(*libs):
        monkeypatch.setattr(threads, "numpy_blas", lambda: [
            SimpleNamespace(internal_api=api, version=version, architecture=arch)
            for api, version, arch in libs])
    for libs, want in [([("openblas", "0.3.31.188.0", "SkylakeX")], fused.FEW_ROWS),
                       ([("openblas", "0.3.27", "Cooperlake")], fused.FEW_ROWS),
                       ([("openblas", "0.3.21", "SkylakeX")], 0),
                       ([("openblas", "0.3.31", "Haswell")], 0),
                       ([("openblas", "0.3.31", "SapphireRapids")], 0),
                       ([("openblas", None, "SkylakeX")], 0),
                       ([("mkl", "2024.1", None)], 0), ([], 0),
                       ([("openblas", "0.3.31", "SkylakeX"), ("openblas", "0.3.21", "Zen")], 0)]:
        blas(*libs)
        assert fused.few_rows("float32") == want, libs
    blas(("openblas", "0.3.31", "SKYLAKEX"))                  # a build for one CPU
    assert fused.few_rows("float32") == fused.FEW_ROWS
    assert fused.few_rows("float64") == 0


def test_numpy_blas_is_numpys_own(monkeypatch):
    """threads.numpy_blas picks numpy's bundled library over scipy's copy, and without one,
    the system's library, never another package's copy."""
    def loaded(*paths):
        libs = [SimpleNamespace(filepath=p) for p in paths]
        monkeypatch.setattr(threads, "_controller", lambda: SimpleNamespace(lib_controllers=libs))
        return [lib.filepath for lib in threads.numpy_blas()]
    site = "/venv/lib/python3.11/site-packages"
    assert loaded(f"{site}/scipy.libs/libscipy_openblas.so",
                  f"{site}/numpy.libs/libscipy_openblas64_.so") == [
        f"{site}/numpy.libs/libscipy_openblas64_.so"]
    assert loaded(f"{site}/numpy/.dylibs/libscipy_openblas64_.dylib") == [
        f"{site}/numpy/.dylibs/libscipy_openblas64_.dylib"]
    assert loaded(f"{site}/scipy.libs/libscipy_openblas.so",
                  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0") == [
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"]
    assert loaded(f"{site}/scipy/.dylibs/libscipy_openblas.dylib") == []      # Accelerate
    assert loaded(None) == [None]


def test_numba_step_takes_the_chosen_layout():
    """backend.training_step hands FusedStep fused.few_rows for the model's dtype."""
    for dtype in ("float32", "float64"):
        model = nv.VAE(dtype=dtype, seed=0, backend="numba")
        model.loss_and_grads(*batch(np.random.default_rng(0), 4, 1, dtype))
        assert model._step.few_rows == fused.few_rows(dtype)


def with_few_rows(model, rows):
    """model, its numba step replaced by one whose forward products of ≤ rows rows are W·aᵀ."""
    model._step = FusedStep(model, fused.numba_kernels(model.dtype, model.activation), rows)
    return model


def count_transposes(monkeypatch):
    """A list that gets one entry per W·aᵀ product the numba step runs (its transposed copy):
    shows the tests below take the path they claim to."""
    calls, real = [], kernels.transpose_into

    def counted(a, out):
        calls.append(a.shape)
        real(a, out)
    monkeypatch.setattr(kernels, "transpose_into", counted)
    return calls


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_forward_products_as_w_at_same_loss_and_gradients(dtype, activation, monkeypatch):
    """Both sides of the row limit (32; the decoder's L·B rows may cross it when the
    encoder's B do not), every product W·aᵀ (a limit of the largest batch), and the scratch
    reused by a smaller batch after a larger one."""
    kw = dict(dtype=dtype, seed=0, activation=activation)
    ref = nv.VAE(**kw, backend="numpy")
    rng = np.random.default_rng(13)
    calls = count_transposes(monkeypatch)
    for rows in (32, 128):                   # 128: every product of every batch below
        ours = with_few_rows(nv.VAE(**kw, backend="numba"), rows)
        for B, L, grey in [(16, 1, False), (32, 1, False), (33, 1, True), (16, 2, False),
                           (20, 3, True), (128, 1, False), (1, 1, False)]:
            del calls[:]
            check_same(ours, ref, *batch(rng, B, L, dtype, grey), TOL[dtype])
            assert len(calls) == (B <= rows) * 4 + (L * B <= rows) * 3, (rows, B, L, calls)


@pytest.mark.skipif(fused.few_rows("float32") == 0,
                    reason="fused.few_rows uses the usual products with this BLAS kernel")
def test_forward_products_as_w_at_keep_float32_bits_where_chosen(monkeypatch):
    """20 Adam steps at batch 16 (all products W·aᵀ) and 20 at 40 (the usual way), and the
    same model stepped with few_rows 0 throughout: the same losses and parameters, bit for bit."""
    runs, calls = [], count_transposes(monkeypatch)
    for rows in (fused.few_rows("float32"), 0):
        model = with_few_rows(nv.VAE(dtype="float32", seed=2, backend="numba"), rows)
        opt = nv.Adam(model.num_params, "float32", backend="numba")
        gflat, grads = model.new_grads()
        rng = np.random.default_rng(11)
        losses = []
        for B in [16] * 20 + [40] * 20:
            losses.append(model.loss_and_grads(*batch(rng, B, 1, "float32"), out=grads)[0])
            opt.step(model.flat, gflat)
        runs.append((losses, model.flat.copy()))
        assert len(calls) == (20 * 7 if rows else 0), (rows, len(calls))
        del calls[:]
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("estimator", ["standard", "stl", "dreg"])
def test_iwae_same_loss_and_gradients(dtype, estimator):
    """The bound (objective "iwae", fused.IWAEStep) at the burda2015-iwae preset's network and
    K = 5, through growing and shrinking batches, K = 1, and the notebook's LeakyReLU network."""
    for activation, Z, cases in [("tanh", 50, [(20, 5), (7, 5), (20, 1), (33, 2)]),
                                 ("leaky_relu", 20, [(16, 5)])]:
        ours = nv.VAE(784, 200, Z, dtype=dtype, seed=1, backend="numba", activation=activation)
        ref = nv.VAE(784, 200, Z, dtype=dtype, seed=1, backend="numpy", activation=activation)
        rng = np.random.default_rng(11)
        for B, K in cases:
            x, eps = batch(rng, B, K, dtype, Z=Z)
            eps = eps.reshape(K, B, Z)
            if dtype == "float32" and activation == "leaky_relu":
                x, eps = away_from_kinks(ours.params, x, eps)
            loss, grads = ours.loss_and_grads(x, eps, objective="iwae", estimator=estimator)
            ref_loss, ref_grads = ref.loss_and_grads(x, eps, objective="iwae",
                                                     estimator=estimator)
            assert abs(loss - ref_loss) <= TOL[dtype] * abs(ref_loss), (loss, ref_loss)
            assert_all_close(grads, ref_grads, TOL[dtype], f"iwae/{estimator} numba vs numpy")


def test_iwae_backend_check_rejects_a_planted_error():
    """Planted: the numba step's DReG held to the NumPy path's STL (w̃ where w̃² belongs)."""
    ours = nv.VAE(40, 12, 4, dtype="float64", seed=2, backend="numba", activation="tanh")
    ref = nv.VAE(40, 12, 4, dtype="float64", seed=2, backend="numpy", activation="tanh")
    x, eps = batch(np.random.default_rng(3), 6, 5, "float64", Z=4, D=40)
    grads = ours.loss_and_grads(x, eps, objective="iwae", estimator="dreg")[1]
    ref_grads = ref.loss_and_grads(x, eps, objective="iwae", estimator="stl")[1]
    with pytest.raises(AssertionError, match="Encoder"):
        assert_all_close(grads, ref_grads, TOL["float64"], "planted")


def test_iwae_step_allocates_nothing():
    """test_numba_training_step_allocates_nothing's measurement, for the bound at K = 5."""
    model = nv.VAE(784, 200, 50, dtype="float32", seed=0, backend="numba", activation="tanh")
    opt = nv.Adam(model.num_params, "float32", backend="numba")
    rng = np.random.default_rng(5)
    batches = [batch(rng, B, 5, "float32", Z=50) for B in (20, 12)]

    def step(i):
        model.train_step(*batches[i % 2], opt, objective="iwae", estimator="dreg")
    for i in range(4):
        step(i)                                      # compile and size the workspaces
    assert_allocates_nothing(step)


def test_backend_check_rejects_a_planted_error():
    """Planted error: one gradient entry off by 1e-6 (relative) fails the float64 comparison."""
    ours = nv.VAE(dtype="float64", seed=0, backend="numba")
    x, eps = batch(np.random.default_rng(2), 64, 1, "float64")
    _, grads = ours.loss_and_grads(x, eps)
    _, ref_grads = nv.VAE(dtype="float64", seed=0, backend="numpy").loss_and_grads(x, eps)
    w = grads["Decoder.FC_dec2.weight"]
    w[5, 7] += 1e-6 * np.abs(w).max()
    assert rel_err(w, ref_grads["Decoder.FC_dec2.weight"]) > TOL["float64"]
    with pytest.raises(AssertionError):
        assert_all_close(grads, ref_grads, TOL["float64"], "planted")


def test_float32_backend_check_rejects_a_planted_error():
    """Planted error: one float32 gradient entry off by 1e-4 of its tensor's largest entry."""
    ours = nv.VAE(dtype="float32", seed=0, backend="numba")
    x, eps = away_from_kinks(ours.params, *batch(np.random.default_rng(2), 128, 1, "float32"))
    _, grads = ours.loss_and_grads(x, eps)
    _, ref_grads = nv.VAE(dtype="float32", seed=0, backend="numpy").loss_and_grads(x, eps)
    assert_all_close(grads, ref_grads, TOL["float32"])
    w = grads["Encoder.FC_enc2.bias"]
    w[118] += 1e-4 * np.abs(ref_grads["Encoder.FC_enc2.bias"]).max()
    with pytest.raises(AssertionError, match="FC_enc2.bias"):
        assert_all_close(grads, ref_grads, TOL["float32"], "planted")


def test_numba_is_deterministic():
    """Fixed-order reductions: two models, the same steps, the same bits."""
    runs = []
    for _ in range(2):
        model = nv.VAE(dtype="float32", seed=1, backend="numba")
        opt = nv.Adam(model.num_params, "float32", backend="numba")
        gflat, grads = model.new_grads()
        rng = np.random.default_rng(3)
        losses = []
        for _ in range(3):
            loss, _ = model.loss_and_grads(*batch(rng, 128, 1, "float32"), out=grads)
            opt.step(model.flat, gflat)
            losses.append(loss)
        runs.append((losses, model.flat.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_short_trajectory_matches():
    """10 Adam steps at the notebook's sizes, float64: parameters stay together."""
    models = [nv.VAE(dtype="float64", seed=0, backend=b) for b in ("numba", "numpy")]
    opts = [nv.Adam(m.num_params, "float64", backend=m.backend) for m in models]
    bufs = [m.new_grads() for m in models]
    rng = np.random.default_rng(4)
    for step in range(10):
        x, eps = batch(rng, 128 if step < 9 else 96, 1, "float64")
        losses = []
        for m, o, (gflat, grads) in zip(models, opts, bufs):
            losses.append(m.loss_and_grads(x, eps, out=grads)[0])
            o.step(m.flat, gflat)
        assert abs(losses[0] - losses[1]) <= 1e-11 * abs(losses[1])
    assert_all_close(models[0].params, models[1].params, 1e-11, "after 10 steps")


def assert_allocates_nothing(step):
    """10 calls of step(i) raise the traced peak by < 4 KiB (see the test below for why)."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(10):
            step(i)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 4096, f"a step allocated up to {peak - before} bytes"


@pytest.mark.parametrize("few_rows", [None, 128])
def test_numba_training_step_allocates_nothing(few_rows):
    """After warm-up, 10 steps (a full and a partial batch, loss and Adam) raise the traced
    peak by < 4 KiB: no array of the step's size — the smallest, (B, Z) float32 at B = 96, is
    7.5 KiB — is allocated, only a few small Python objects (views, floats) come and go.
    few_rows: the step backend.training_step makes (None), or every forward product W·aᵀ."""
    model = nv.VAE(dtype="float32", seed=0, backend="numba")
    if few_rows is not None:
        with_few_rows(model, few_rows)
    opt = nv.Adam(model.num_params, "float32", backend="numba")
    gflat, grads = model.new_grads()
    rng = np.random.default_rng(5)
    batches = [batch(rng, B, 1, "float32") for B in (128, 96)]

    def step(i):
        x, eps = batches[i % 2]
        model.loss_and_grads(x, eps, out=grads)
        opt.step(model.flat, gflat)
    for i in range(4):
        step(i)                                      # compile and size the workspaces
    workspace = [id(a) for a in (model._step.h1, model._step.logits, model._step.z)]
    assert_allocates_nothing(step)
    assert workspace == [id(a) for a in (model._step.h1, model._step.logits, model._step.z)]


def test_allocation_check_can_fail():
    """The same measurement sees the NumPy path's temporaries (it allocates per step)."""
    model = nv.VAE(dtype="float32", seed=0, backend="numpy")
    x, eps = batch(np.random.default_rng(6), 96, 1, "float32")
    gflat, grads = model.new_grads()
    model.loss_and_grads(x, eps, out=grads)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        model.loss_and_grads(x, eps, out=grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before > 4096


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-9), ("float32", 2e-3)])
def test_log_likelihood_backends_agree(dtype, tol):
    """Same draws (same Generator seed), same estimate. float64: 1e-9 nats of ~550; float32:
    2e-3 nats — each log p(x|z) sums 784 float32 terms (≈ 550 · 6e-8 · √784 ≈ 1e-3) before
    the log-sum-exp."""
    models = [nv.VAE(dtype=dtype, seed=0, backend=b) for b in ("numba", "numpy")]
    x, _ = batch(np.random.default_rng(7), 7, 1, dtype)
    ests = [likelihood.log_likelihood(m, x, 300, np.random.default_rng(8), rows=500)
            for m in models]
    assert np.max(np.abs(ests[0] - ests[1])) <= tol, ests


def test_blocks_cover_every_row_once():
    """Oracle: the rows themselves — each row in exactly one block, in order."""
    from numpyvae.fast.fused import blocks
    for n, block in [(497, 100), (5000, 625), (7, 98), (1, 1), (100, 7)]:
        spans = blocks(n, block)
        assert [r for lo, hi in spans for r in range(lo, hi)] == list(range(n))
        assert all(0 < hi - lo <= block for lo, hi in spans)


def test_log_likelihood_workers_move_no_bit(monkeypatch):
    """Oracle: the same evaluation on one worker (fused.LogWeights), bit for bit (tolerance 0):
    the blocks are fixed by the rows, never by the workers, and each worker has its own
    scratch. float32, where a block's products round differently when its rows change; blocks
    of 100 rows, which split samples of 7 images and do not divide a 497-row chunk; more
    workers than blocks. Planted: workers that lose each chunk's last block (its rows keep
    the previous chunk's numbers) are caught."""
    from numpyvae import fused
    monkeypatch.setattr(fused, "BLOCK_ROWS", 100)
    model = nv.VAE(dtype="float32", seed=0, backend="numba")
    x, _ = batch(np.random.default_rng(7), 7, 1, "float32")

    def estimate(workers):
        return likelihood.log_likelihood(model, x, 300, np.random.default_rng(8), rows=500,
                                         workers=workers)
    one = estimate(1)
    for workers in (2, 3, 64):
        assert np.array_equal(estimate(workers), one), workers
    real = fused.blocks
    monkeypatch.setattr(fused, "blocks", lambda *a: real(*a)[:-1])
    assert not np.array_equal(estimate(2), one)


def test_log_likelihood_chunks_move_only_rounding():
    """Oracle: the numba estimate in the NumPy path's chunks (rows=likelihood.ROWS), the same
    draws; float64, to 1e-9 nats (the header's). 3,000 samples of 7 images are 21,000 rows:
    two numba chunks (fused.CHUNK_ROWS) against five. Planted: one sample fewer per image is
    caught."""
    model = nv.VAE(dtype="float64", seed=0, backend="numba")
    assert backend.likelihood_rows(model) == fused.CHUNK_ROWS > likelihood.ROWS
    assert backend.likelihood_rows(nv.VAE(backend="numpy")) == likelihood.ROWS
    x, _ = batch(np.random.default_rng(7), 7, 1, "float64")

    def estimate(k, rows=None):
        return likelihood.log_likelihood(model, x, k, np.random.default_rng(8), rows=rows,
                                         workers=2)
    own, numpy_chunks = estimate(3000), estimate(3000, likelihood.ROWS)
    assert np.max(np.abs(own - numpy_chunks)) <= 1e-9
    assert not np.max(np.abs(estimate(2999) - numpy_chunks)) <= 1e-9


def test_log_weights_refuse_a_chunk_larger_than_their_workspaces():
    """Known message: the kernels do not check their bounds, so fused.LogWeights refuses a
    chunk of more rows (or other images) than it was made for, before writing any."""
    model = nv.VAE(dtype="float32", seed=0, backend="numba")
    x, _ = batch(np.random.default_rng(7), 7, 1, "float32")
    weights = backend.log_weights(model, x, 14)
    eps = np.zeros((3, 7, model.latent_dim), np.float32)
    with pytest.raises(ValueError, match="made for at most 14 rows of 7 images"):
        weights(model, x, eps)
    with pytest.raises(ValueError, match="made for at most 14 rows of 7 images"):
        weights(model, x, eps[:, :6])
    assert weights(model, x, eps[:2]).shape == (2, 7)


def test_backend_argument_is_checked():
    with pytest.raises(ValueError, match="backend"):
        nv.VAE(backend="jax")
    with pytest.raises(ValueError, match="backend"):
        nv.Adam(10, backend="jax")
