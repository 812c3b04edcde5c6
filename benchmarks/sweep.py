"""`python -m benchmarks.sweep`: every implementation over batch sizes and hidden widths.

For each hidden width H and batch size B of the grid, the implementations of
benchmarks/throughput.py (benchmarks/peers.py) start from fresh parameters (VAE(784, H, Z,
seed)), are validated against the float64 NumPy reference on their first steps, then timed
round-robin, exactly as `python -m benchmarks.throughput` does at one size. Each timed epoch is
the first --steps batches of MNIST train (by default as many as hold --images images, at least
VALIDATE_STEPS), scaled to a full epoch by images, so large batches do not cost more than small
ones. Compilation (numba, jax, torch.compile) happens in the untimed first epoch.

Writes --json (rows {impl, batch_size, hidden_dim, seconds_per_epoch, images_per_s, ...} and
`summary`, rewritten after every grid point, so an interrupted sweep keeps what it measured) and
--plot: images/s against batch size (log axis), one line per implementation, one panel per
hidden width, the GEMM floors dashed. At the end it prints the summary (`summary`): per point,
numpyvae's lead over the fastest peer, its time over its products alone, and the lead those
products allow.
"""
import math
import os
import sys
import time

from numpyvae.run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpyvae as nv
    from numpyvae.atomic import atomic_write
    from numpyvae.errors import UsageError
    from numpyvae.run.cli import argument_parser, int_in, one_line, run_command, say
    from numpyvae.run.config import DATA_DIR_FLAG

    from . import machine, peers, throughput
    from .throughput import BenchmarkError, check_output, write_json

D = peers.D


def steps_for(batch, args, n):
    """Steps timed per epoch at this batch size: --steps, or enough batches for --images."""
    steps = args.steps or math.ceil(args.images / batch)
    return max(min(steps, math.ceil(n / batch)), min(throughput.VALIDATE_STEPS,
                                                      math.ceil(n / batch)))


NUMPYVAE = "numpyvae numba"
PEERS = [n for n in peers.CPU_NAMES if n.startswith(("torch", "jax"))]


def summary(rows):
    """Per grid point, in the grid's order, a dict: numpyvae's s/epoch (`numpyvae`), the
    fastest CPU peer (Torch or JAX, `peer`) and its s/epoch (`peer_seconds`); `lead`, that
    time over numpyvae's; `vs_floor`, numpyvae's over its products alone (peers.FLOOR);
    `bound`, the peer's time over the products': the lead of a step that spent nothing beyond
    its products, so a lead above it needs faster products than numpy's BLAS; `spread`,
    numpyvae's slowest timed epoch over its fastest (a noisy point shows here). None where a
    row is missing; a point without numpyvae is left out."""
    points = {}
    for r in rows:
        points.setdefault((r["hidden_dim"], r["batch_size"]), {})[r["impl"]] = r
    out = []
    for (H, B), by in points.items():
        if NUMPYVAE not in by:
            continue
        mine, floor = by[NUMPYVAE], by.get(peers.FLOOR)
        s = mine["seconds_per_epoch"]
        timed = [n for n in PEERS if n in by]
        peer = min(timed, key=lambda n: by[n]["seconds_per_epoch"]) if timed else None
        p = by[peer]["seconds_per_epoch"] if peer else None
        f = floor["seconds_per_epoch"] if floor else None
        out.append(dict(hidden_dim=H, batch_size=B, numpyvae=s, peer=peer, peer_seconds=p,
                        lead=p / s if p is not None else None,
                        vs_floor=s / f if f is not None else None,
                        bound=p / f if p is not None and f is not None else None,
                        spread=max(mine["epochs"]) / min(mine["epochs"])))
    return out


def print_summary(points):
    """summary(rows) as a table."""
    num = lambda v, w, d: f"{v:>{w}.{d}f}" if v is not None else f"{'-':>{w}}"   # noqa: E731
    print(f"\n{'hidden':>6}{'batch':>7}{'numpyvae':>10}  {'fastest peer':<24}{'s/epoch':>8}"
          f"{'lead':>7}{'x floor':>9}{'bound':>7}{'spread':>8}")
    for q in points:
        print(f"{q['hidden_dim']:>6}{q['batch_size']:>7}{q['numpyvae']:>10.3f}  "
              f"{q['peer'] or '-':<24}{num(q['peer_seconds'], 8, 3)}{num(q['lead'], 7, 2)}"
              f"{num(q['vs_floor'], 9, 2)}{num(q['bound'], 7, 2)}{q['spread']:>8.2f}")
    print("lead: the fastest peer's s/epoch over numpyvae's; x floor: numpyvae's over its "
          "matrix products alone;\nbound: the fastest peer's over those products (the lead of a "
          "step of products alone); spread: numpyvae's\nslowest timed epoch over its fastest")


def plot(rows, path, title):
    """images/s against batch size, one panel per hidden width, one line per implementation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg # only when a picture is asked for
    from matplotlib.figure import Figure                    # (--plot)
    hidden = sorted({r["hidden_dim"] for r in rows})
    names = [n for n in peers.all_names() if any(r["impl"] == n for r in rows)]
    colors = {n: f"C{i}" for i, n in enumerate(names)}
    fig = Figure(figsize=(4.2 * len(hidden) + 1.8, 4.2))
    axes = fig.subplots(1, len(hidden), squeeze=False)[0]
    for ax, H in zip(axes, hidden):
        for name in names:
            pts = sorted((r["batch_size"], r["images_per_s"]) for r in rows
                         if r["impl"] == name and r["hidden_dim"] == H)
            if pts:
                b, ips = zip(*pts)
                ax.plot(b, ips, marker="o", ms=3, color=colors[name], label=name,
                        linestyle="--" if name.startswith("gemm floor") else "-")
        batch_sizes = sorted({r["batch_size"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("batch size")
        ax.set_title(f"hidden {H}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training images / s")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    FigureCanvasAgg(fig)
    try:
        if not atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100,
                                                         bbox_inches="tight"), replace=False):
            raise UsageError(f"--plot {path}: something appeared there while this ran; it is "
                             f"left as it is")
    except OSError as e:
        raise OSError(f"cannot write --plot {path}: {e.strerror or e}") from None


def build_parser():
    t = throughput
    p = argument_parser("python -m benchmarks.sweep", __doc__)
    p.add_argument("--batch-sizes", type=t.size_list(t.batch_flag),
                   default=[16, 32, 64, 128, 256, 512, 1024, 2048],
                   help="comma-separated (default 16,32,64,128,256,512,1024,2048)")
    p.add_argument("--hidden-dims", type=t.size_list(t.hidden_flag), default=[200, 500, 1000],
                   help="comma-separated (default 200,500,1000)")
    p.add_argument("--latent-dim", type=t.latent_flag, default=20, help="default 20")
    p.add_argument("--steps", type=t.steps_flag, default=0, help="batches timed per epoch at "
                   "every size, scaled to a full epoch (default 0: as many as hold --images "
                   "images)")
    p.add_argument("--images", type=int_in(1, t.MAX_IMAGES), default=6144, help="images timed "
                   "per epoch when --steps is not given (default 6144)")
    p.add_argument("--epochs", type=t.epochs_flag, default=3, help="timed epochs per "
                   "implementation and size, round-robin; the median is reported (default 3)")
    p.add_argument("--impls", type=t.impl_list, default=None, help="comma-separated "
                   f"implementations (default all: {', '.join(peers.all_names())})")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="default float32")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="where MNIST is (default: numpyvae.data's, ~/datasets)")
    p.add_argument("--seed", type=t.seed_flag, default=0, help="the data order, ε and the "
                   "initial parameters (default 0)")
    p.add_argument("--json", default="sweep.json", metavar="PATH",
                   help="results (default sweep.json)")
    p.add_argument("--plot", default="sweep.png", metavar="PATH",
                   help="the picture (default sweep.png)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(lambda: _sweep(args, argv))


def _sweep(args, argv):
    """main's work: returns 0 once --json and --plot are written, 1 when a measurement cannot
    be reported (BenchmarkError; --json keeps the grid points measured before it)."""
    names = throughput.choose(args.impls)
    check_output(args.json, "--json")
    check_output(args.plot, "--plot")
    if os.path.abspath(args.json) == os.path.abspath(args.plot):
        raise UsageError(f"--json and --plot are both {args.json}; give each its own file")
    try:
        rows, info, seconds = sweep(args, names, argv)
    except BenchmarkError as e:
        say(f"error: {one_line(e)}")
        return 1
    print_summary(summary(rows))
    print(f"\nwrote {one_line(args.json)} ({len(rows)} rows, {seconds:.0f} s)")
    plot(rows, args.plot, f"{info['cpu']}, {info['cores']} cores, {args.dtype}, latent "
         f"{args.latent_dim}; OpenBLAS kernel {info['blas_kernel']}")
    print(f"wrote {one_line(args.plot)}")
    return 0


def sweep(args, names, argv):
    """Validate and time `names` at every point of the grid, rewriting --json after each;
    returns (rows, the machine block, seconds)."""
    info = machine.report("benchmarks.sweep", argv)

    Z, dtype = args.latent_dim, args.dtype
    X = throughput.load_train(args.data_dir, dtype, args.seed)                # (N, D)
    N = len(X)
    E = throughput.noise(N, Z, dtype, args.seed)                              # (1, N, Z)
    rows, skipped, start = [], {}, time.perf_counter()
    for H in args.hidden_dims:
        params = nv.VAE(D, H, Z, dtype=dtype, seed=args.seed).params
        for B in args.batch_sizes:
            ranges = throughput.batches(N, B, steps_for(B, args, N))
            print(f"\nhidden {H}, batch {B}: {len(ranges)} steps x {args.epochs} epochs "
                  f"({time.perf_counter() - start:.0f} s into the sweep)")
            setup = peers.Setup(params, X, E, dtype, lr=1e-3)
            peers.forget_compiled()                # the previous size's peers are done
            point, missing = throughput.measure(names, setup, ranges, args.epochs)
            for m in missing:
                skipped.setdefault(m["impl"], m["reason"])
            names = [n for n in names if n not in skipped]       # say it once, try it once
            for r in point:
                r.update(batch_size=B, hidden_dim=H, latent_dim=Z, steps=len(ranges))
                print(f"  {r['impl']:<24}{r['seconds_per_epoch']:>9.3f} s/epoch"
                      f"{r['images_per_s']:>10.0f} images/s")
            rows += point
            write_json(args.json, dict(machine=info, settings=vars(args), rows=rows, skipped=[
                dict(impl=k, reason=v) for k, v in skipped.items()], summary=summary(rows)),
                replace=len(rows) > len(point))
    return rows, info, time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
