"""`python -m benchmarks.throughput`: training-epoch and log-likelihood speed, side by side.

In one process, on the same real data (MNIST train, binarized `round(x/255)`, preloaded and
shuffled once so every implementation reads the same contiguous batches and the same ε):

    numpyvae (numba)   VAE(backend="numba") + Adam(backend="numba"): the fused step
    numpyvae (numpy)   the plain NumPy path, the readable oracle
    torch <device>     reference/model.py `build` + `neg_elbo` + torch.optim.Adam, CPU (and
                       CUDA/MPS when present), torch's default thread count
    GEMM floor         only the step's 20 matrix products (numpyvae.fused.matmul_shapes) in
                       NumPy/OpenBLAS, same shapes: what this design cannot go below
    GEMM floor, torch  the same 20 products in Torch on the CPU: how much of Torch's epoch is
                       matrix products, so how far ahead of Torch any implementation can get

Every implementation is validated before it is timed: its loss on the same batch and ε, from
the same parameters, must equal a float64 NumPy reference to float32 tolerance (and the numba
gradients the NumPy ones), else this raises. Warm-up (numba compile, first BLAS/Torch calls) is
excluded; the figure is the median over --epochs timed epochs (or --steps steps per epoch,
scaled to a full epoch), taken round-robin (epoch r of every implementation, then epoch r + 1)
so that the ratios hold even when a shared machine slows down for a while.

Then the importance-weighted log-likelihood (k = --k, Burda et al. 2015) on the first
--ll-images test images: numpyvae (numba and numpy) against a straightforward Torch IWAE, all
fed the same ε draws, also round-robin.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import numba
import numpyvae as nv
from numpyvae import data, likelihood
from numpyvae.fused import matmul_shapes

D = 784
FLOOR = "GEMM floor (20 matmuls)"                 # numpyvae's floor: the products in OpenBLAS
TORCH_FLOOR = "GEMM floor, torch cpu"             # the same products in Torch's BLAS


class ValidationError(Exception):
    pass


def rel_err(ours, ref):
    """max |ours − ref| / max |ref|, as tests/checks.py."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return np.max(np.abs(ours - ref)) / np.max(np.abs(ref))


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:                                   # older NumPy: no dict mode
        blas = "unknown"
    info = dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                numpy=np.__version__, numba=numba.__version__, blas=blas,
                openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"))
    try:
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        info.update(torch=None)
    return info


def load_train(data_dir, dtype, seed):
    try:
        images, _ = data.load("mnist", split="train", data_dir=data_dir)
    except data.DataError as err:
        raise SystemExit(f"benchmarks.throughput needs MNIST train (numpyvae.data.load): {err}\n"
                         f"Put the IDX files in --data-dir (or ~/datasets/mnist) and run again.")
    rng = np.random.default_rng(seed)
    images = images.reshape(len(images), D)[rng.permutation(len(images))]   # (N, D), shuffled once
    x = (images >= 128).astype(dtype)                                       # round(x/255)
    return x


def batches(n, batch, steps):
    """Row ranges of one epoch (or its first `steps` batches): the last one may be partial."""
    starts = list(range(0, n, batch))
    if steps:
        starts = starts[:steps]
    return [(s, min(s + batch, n)) for s in starts]


# ---------------------------------------------------------------------------------------------
# the implementations: each gives (validate(x, eps) -> loss, run_epoch(ranges))

def numpyvae_impl(backend, params, dtype, lr, X, E):
    model = nv.VAE(D, params["Encoder.FC_enc1.weight"].shape[0],
                   params["Encoder.FC_mean.weight"].shape[0], dtype=dtype, backend=backend)
    model.load_params(params)
    opt = nv.Adam(model.num_params, dtype, lr=lr, backend=backend)
    gflat, grads = model.new_grads()

    def validate(x, eps):
        return model.loss_and_grads(x, eps, out=grads)

    def epoch(ranges):
        for a, b in ranges:
            model.loss_and_grads(X[a:b], E[a:b], out=grads)
            opt.step(model.flat, gflat)
    return validate, epoch, model


def torch_impl(device, params, dtype, lr, X, E):
    import torch
    from reference.model import from_params, neg_elbo
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    model = from_params(params, dtype=tdtype, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, Et = torch.from_numpy(X).to(device), torch.from_numpy(E).to(device)
    sync = (torch.cuda.synchronize if device.type == "cuda"
            else getattr(getattr(torch, "mps", None), "synchronize", None)
            if device.type == "mps" else None)

    def validate(x, eps):
        loss, _ = neg_elbo(model, torch.from_numpy(x).to(device), torch.from_numpy(eps).to(device))
        return loss.item()

    def epoch(ranges):
        total = 0.0
        for a, b in ranges:
            opt.zero_grad()
            loss, _ = neg_elbo(model, Xt[a:b], Et[a:b])
            loss.backward()
            opt.step()
            total += loss.item()          # as a training loop logs it (numpyvae returns a float)
        if sync:
            sync()
    return validate, epoch, model


def gemm_floor_impl(hidden, latent, dtype, library="numpy"):
    """The step's matrix products alone, into preallocated outputs, for each batch size:
    in NumPy (OpenBLAS), the floor of numpyvae's design, or in Torch on the CPU (its own
    BLAS, MKL on x86), which says how much of Torch's epoch is matrix products."""
    rng = np.random.default_rng(0)
    cache = {}
    if library == "torch":
        import torch
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
                        for m, k, n, ta, tb in matmul_shapes(B, D, hidden, latent)]
        return cache[B]

    def epoch(ranges):
        for a, b in ranges:
            for A, Bm, C in mats(b - a):
                matmul(A, Bm, out=C)
    return epoch


# ---------------------------------------------------------------------------------------------

def time_epochs(timed, ranges, repeats, scale):
    """{name: [seconds per epoch, ...]} for each (name, epoch) in `timed`, taken round-robin:
    repeat r times every implementation's epoch r in turn, so a slow spell of a shared machine
    lands on all of them alike instead of on whichever happened to be running."""
    for _, epoch in timed:
        epoch(ranges[:10])                                 # warm-up, untimed
    times = {name: [] for name, _ in timed}
    for _ in range(repeats):
        for name, epoch in timed:
            t = time.perf_counter()
            epoch(ranges)
            times[name].append((time.perf_counter() - t) * scale)
    return times


def torch_log_likelihood(tmodel, x, k, rng, rows=5000):
    """A straightforward Torch IWAE (Burda et al. 2015, eq. 8), ε from the numpy Generator."""
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        xt = torch.from_numpy(x)
        B = xt.shape[0]
        mean, log_var = tmodel.Encoder(xt)                             # (B, Z)
        Z = mean.shape[1]
        sigma = torch.exp(0.5 * log_var)
        c = Z * float(np.log(2 * np.pi))
        total = torch.full((B,), -float("inf"), dtype=torch.float64)
        chunk, done = max(1, rows // B), 0
        while done < k:
            S = min(chunk, k - done)
            eps = torch.from_numpy(rng.standard_normal((S, B, Z), dtype=np.float32
                                                       if xt.dtype == torch.float32 else np.float64))
            z = mean + sigma * eps                                     # (S, B, Z)
            logits = tmodel.Decoder.logits(z)                          # (S, B, D)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, xt.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * (z.pow(2).sum(-1) + c)
            log_qz = -0.5 * (eps.pow(2).sum(-1) + c + log_var.sum(-1))
            w = (log_px + log_pz - log_qz).double()                    # (S, B)
            total = torch.logaddexp(total, torch.logsumexp(w, 0))
            done += S
        return (total - np.log(k)).numpy()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                                description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per implementation; "
                   "the median is reported (default 3)")
    p.add_argument("--steps", type=int, default=0, help="time only the first N batches of each "
                   "epoch and scale to a full epoch (quick runs)")
    p.add_argument("--hidden-dim", type=int, default=200)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--ll-images", type=int, default=20, help="test images for the k-sample "
                   "log-likelihood (0 skips it)")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--no-torch", action="store_true", help="skip the Torch rows")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)

    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, "
          f"numpy {info['numpy']} ({info['blas']}, OPENBLAS_NUM_THREADS={info['openblas_threads']}),"
          f" numba {info['numba']}, torch {info['torch']}"
          + (f" (torch's default {info['torch_threads']} threads)" if info.get('torch') else ""))

    dtype, H, Z, bs = args.dtype, args.hidden_dim, args.latent_dim, args.batch_size
    X = load_train(args.data_dir, dtype, args.seed)                           # (N, D)
    N = len(X)
    E = np.random.default_rng(args.seed + 1).standard_normal((N, Z)).astype(dtype)   # (N, Z)
    ranges = batches(N, bs, args.steps)
    n_full = len(batches(N, bs, 0))
    scale = n_full / len(ranges)
    print(f"data: MNIST train, {N} images, batch {bs} ({n_full} steps/epoch), {dtype}; timing "
          f"{len(ranges)} steps x {args.epochs} epochs" + (f", scaled x{scale:.2f}" if scale != 1 else ""))

    params = nv.VAE(D, H, Z, dtype=dtype, seed=args.seed).params
    ref = nv.VAE(D, H, Z, dtype="float64", seed=args.seed)                  # the oracle
    x0, e0 = X[:bs], E[:bs]
    ref_loss, ref_grads = ref.loss_and_grads(x0.astype(np.float64), e0.astype(np.float64))
    tol = 1e-5 if dtype == "float32" else 1e-10     # as tests/test_parity_torch.py states

    impls = [("numpyvae (numba)", *numpyvae_impl("numba", params, dtype, 1e-3, X, E)[:2]),
             ("numpyvae (numpy)", *numpyvae_impl("numpy", params, dtype, 1e-3, X, E)[:2])]
    if not args.no_torch:
        import torch
        from reference.model import pick_device
        devices = [torch.device("cpu")]
        if pick_device().type != "cpu":
            devices.append(pick_device())
        for dev in devices:
            impls.append((f"torch {dev.type}", *torch_impl(dev, params, dtype, 1e-3, X, E)[:2]))

    for name, validate, _ in impls:
        out = validate(x0, e0)
        loss = out[0] if isinstance(out, tuple) else out
        if not abs(loss - ref_loss) <= tol * abs(ref_loss):
            raise ValidationError(f"{name}: loss {loss!r} on the first batch, the float64 NumPy "
                                  f"reference gives {ref_loss!r} (tolerance {tol:g} relative)")
        if isinstance(out, tuple):
            worst = max(rel_err(out[1][k], ref_grads[k]) for k in ref_grads)
            if not worst <= tol:
                raise ValidationError(f"{name}: gradient rel err {worst:.2e} > {tol:g}")
    timed = [(name, epoch) for name, _, epoch in impls]
    timed.append((FLOOR, gemm_floor_impl(H, Z, dtype, "numpy")))
    if not args.no_torch:
        timed.append((TORCH_FLOOR, gemm_floor_impl(H, Z, dtype, "torch")))
    rows = []
    for name, times in time_epochs(timed, ranges, args.epochs, scale).items():
        rows.append(dict(impl=name, seconds_per_epoch=statistics.median(times), epochs=times))
        print(f"  timed {name}: " + ", ".join(f"{t:.3f}" for t in times) + " s")

    by = {r["impl"]: r["seconds_per_epoch"] for r in rows}
    t_torch, t_floor = by.get("torch cpu"), by[FLOOR]
    w = max(len(r["impl"]) for r in rows) + 2
    print(f"\n{'implementation':<{w}}{'s/epoch':>9}{'images/s':>11}{'x torch cpu':>13}{'x floor':>9}")
    for r in rows:
        s = r["seconds_per_epoch"]
        r.update(images_per_s=N / s, vs_torch_cpu=s / t_torch if t_torch else None,
                 vs_floor=s / t_floor)
        print(f"{r['impl']:<{w}}{s:>9.3f}{N / s:>11.0f}"
              f"{(f'{s / t_torch:.2f}' if t_torch else '-'):>13}{s / t_floor:>9.2f}")

    ll_rows = []
    if args.ll_images:
        ll_rows = bench_log_likelihood(args, params, dtype)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, settings=vars(args), epoch=rows, log_likelihood=ll_rows),
                      f, indent=2)
        print(f"wrote {args.json}")


def bench_log_likelihood(args, params, dtype):
    """k-sample log-likelihood of the first test images, all from the same initial parameters
    and the same ε stream; validated against the NumPy path before reporting."""
    try:
        images, _ = data.load("mnist", split="test", data_dir=args.data_dir)
    except data.DataError as err:
        raise SystemExit(f"benchmarks.throughput needs MNIST test for --ll-images: {err}")
    x = (images[:args.ll_images].reshape(-1, D) >= 128).astype(dtype)        # (n, D)
    H, Z = args.hidden_dim, args.latent_dim
    runs = []
    for backend in ("numba", "numpy"):
        model = nv.VAE(D, H, Z, dtype=dtype, backend=backend)
        model.load_params(params)
        runs.append((f"numpyvae ({backend})",
                     lambda seed, k, m=model: likelihood.log_likelihood(
                         m, x, k, np.random.default_rng(seed))))
    if not args.no_torch:
        import torch
        from reference.model import from_params
        tm = from_params(params, dtype=torch.float32 if dtype == "float32" else torch.float64)
        runs.append(("torch cpu", lambda seed, k: torch_log_likelihood(
            tm, x, k, np.random.default_rng(seed))))
    for _, run in runs:
        run(0, 50)                                                    # warm-up (compile)
    results, times = {}, {name: [] for name, _ in runs}
    for _ in range(max(1, args.epochs)):                              # round-robin, as epochs
        for name, run in runs:
            t = time.perf_counter()
            results[name] = run(123, args.k)
            times[name].append(time.perf_counter() - t)
    rows = [dict(impl=name, seconds=statistics.median(times[name]), runs=times[name],
                 mean_log_px=float(np.mean(results[name]))) for name, _ in runs]
    base = results["numpyvae (numpy)"]
    for name, res in results.items():                      # same ε: the same estimates
        diff = float(np.max(np.abs(res - base)))
        if not diff <= 1e-3:
            raise ValidationError(f"log-likelihood: {name} differs from the NumPy path by "
                                  f"{diff:.2e} nats (> 1e-3)")
    t_torch = next((r["seconds"] for r in rows if r["impl"] == "torch cpu"), None)
    print(f"\nlog-likelihood, k = {args.k}, {len(x)} test images, {dtype}, median of "
          f"{max(1, args.epochs)} runs (same initial parameters and ε for all)")
    print(f"{'implementation':<26}{'seconds':>9}{'x torch cpu':>13}{'mean log p(x)':>15}")
    for r in rows:
        r["vs_torch_cpu"] = r["seconds"] / t_torch if t_torch else None
        ratio = f"{r['vs_torch_cpu']:.2f}" if t_torch else "-"
        print(f"{r['impl']:<26}{r['seconds']:>9.3f}{ratio:>13}{r['mean_log_px']:>15.3f}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
