"""`python -m benchmarks.throughput`: training-epoch and log-likelihood speed, side by side.

In one process, on the same real data (MNIST train, binarized `round(x/255)`, preloaded and
shuffled once so every implementation reads the same contiguous batches and the same ε), every
implementation of benchmarks/peers.py that is installed, training the same network on the same
objective (the ELBO, or with --objective iwae the importance-weighted bound of --samples K, its
encoder gradient by --estimator; --preset burda2015-iwae sets Burda et al.'s network, batch and
bound): numpyvae (numba, numpy), Torch (eager, eager with a fused Adam, torch.compile), JAX
(jit of the step, the whole epoch under lax.scan), and the GEMM floors (the step's 20 matrix
products alone, in OpenBLAS and in Torch).
A peer whose library is missing is skipped with one line saying how to install it.

Every implementation is validated before anything is timed: its first untimed epoch (which
also compiles and warms it up) must give, for its first VALIDATE_STEPS steps from the same
parameters on the same batches and ε, the losses of a float64 NumPy reference trained the same
way (numpyvae, float64, with Adam, on the same objective) to float32 tolerance, else this
raises ValidationError. The first loss checks the forward pass, the later ones the gradients
and the Adam update that produced the parameters they are computed from. The figure is then the
median over --epochs timed epochs (or --steps steps per epoch, scaled to a full epoch by
images), taken round-robin (epoch r of every implementation, then epoch r + 1) so that the
ratios hold even when a shared machine slows down for a while.

--busy times every implementation a second time beside one other CPU-bound process, as on a
shared machine, and reports each one's slowdown (busy / quiet, both from this run).

Every flag is typed and bounded, and --json's folder checked, before anything is loaded or
timed. A peer that fails its validation, or a timing that is not a finite positive number, is
one line and exit status 1 (BenchmarkError), never a figure; the JSON is standard (no NaN).

The machine block names each library's BLAS and the kernel it runs, and warns when
OPENBLAS_CORETYPE pins numpy's OpenBLAS below what the CPU would pick (benchmarks/machine.py).

Then the importance-weighted log-likelihood (k = --k, Burda et al. 2015) on the first
--ll-images test images: numpyvae (numba and numpy) against a straightforward Torch IWAE, all
fed the same ε draws, also round-robin.
"""
import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import time

from numpyvae.run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np

    import numpyvae as nv
    from numpyvae import data, likelihood, threads
    from numpyvae.atomic import atomic_write
    from numpyvae.datasets.fetch import MAX_TRAIN_IMAGES
    from numpyvae.errors import DataError, UsageError
    from numpyvae.run.cli import argument_parser, int_in, one_line, run_command, say
    from numpyvae.oracle.activations import ACTIVATIONS
    from numpyvae.oracle.iwae import ESTIMATORS, OBJECTIVES, check_objective
    from numpyvae.run.config import DATA_DIR_FLAG, PRESETS
    from numpyvae.run.folder import check_output_path, refuse_run_file
    from numpyvae.run.probe import choose_threads

    from . import machine, peers

D = peers.D
FLOOR, TORCH = peers.FLOOR, peers.TORCH
# The first loss checks the forward pass; the 2nd and 3rd, the gradients and Adam's update
# (its bias corrections at t = 1 and t = 2) that produced the parameters they start from.
VALIDATE_STEPS = 3
# Relative, on each of those losses. float32: as tests/math/test_parity_torch.py states; every peer
# measured ≤ 4e-7 over its first three steps (hidden 16 to 1000, batch 16 to 400).
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
# Seconds of rest before each timed epoch: the previous library's worker threads (OpenBLAS's
# spin for about 2^28 cycles, ~0.1 s, after a call; OpenMP's and XLA's also spin) go idle
# instead of taking cores from the next implementation.
SETTLE = 0.2


class BenchmarkError(Exception):
    """A measurement that cannot be reported: the message says what was found; nothing of it
    is printed as a figure or written (the command exits 1)."""


class ValidationError(BenchmarkError):
    """An implementation that does not compute what the float64 reference computes."""


def load_train(data_dir, dtype, seed):
    try:
        images, _ = data.load("mnist", split="train", data_dir=data_dir)
    except data.DataError as err:
        found = str(err).rstrip(".")
        raise DataError(f"benchmarks needs MNIST train (numpyvae.data.load): {found}. "
                             f"Put the IDX files in --data-dir (or ~/datasets/mnist) and run "
                             f"again.") from None
    rng = np.random.default_rng(seed)
    images = images.reshape(len(images), D)[rng.permutation(len(images))]   # (N, D), shuffled once
    return (images >= 128).astype(dtype)                                    # round(x/255)


def noise(n, latent_dim, dtype, seed, samples=1):
    """ε, `samples` draws for every row of the data, the same for every implementation; with
    one sample, the same numbers for any number of samples' first."""
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((samples, n, latent_dim)).astype(dtype)           # (K, N, Z)


def batches(n, batch, steps):
    """Row ranges of one epoch (or its first `steps` batches): the last one may be partial."""
    starts = list(range(0, n, batch))
    if steps:
        starts = starts[:steps]
    return [(s, min(s + batch, n)) for s in starts]


def choose(impls=None, no_torch=False):
    """The implementations to run, in the table's order: `impls` (a list of names, from
    --impls) or all of them, less the Torch rows with `no_torch`."""
    names = [n for n in peers.all_names() if impls is None or n in impls]
    if no_torch:
        names = [n for n in names if "torch" not in n]
    if not names:
        raise UsageError(f"--no-torch leaves none of --impls {','.join(impls)} to run; ask "
                         f"for another implementation or drop --no-torch")
    return names


# ---------------------------------------------------------------------------------------------
# the command line (benchmarks.sweep's too): every flag typed and bounded, every output path
# checked before anything is timed

# Upper bounds, so that a size no machine could hold is one usage line, not a MemoryError or an
# OverflowError after the data is loaded. Images and batch: MNIST train's 60,000 (test's 10,000).
# Hidden: the two (H, H) layers with their gradients and Adam's moments are ≈ 2 GB in float32
# at 8,192. Latent: ε for every training image, (60,000, Z), is ≈ 1 GB in float32 at 4,096.
# k: L_k is decoded in chunks, so k costs time, not memory. Seed: what NumPy, Torch and JAX
# all take (0 to 2³² − 1).
MAX_IMAGES, MAX_TEST_IMAGES = MAX_TRAIN_IMAGES, 10_000
MAX_HIDDEN, MAX_LATENT = 8_192, 4_096
MAX_EPOCHS, MAX_K, MAX_SEED = 1_000, 10_000_000, 2**32 - 1
# Samples per image in training: ε for every training image, (K, 60,000, Z), is ≈ 1 GB in
# float32 at K·Z = 4,096, the latent bound's (drawn in float64 first: 3 GB at the peak). The
# decoder's rows a step, batch·K, at most MAX_IMAGES, as with one sample: its workspaces are
# (batch·K, 784) arrays. Both checked after parsing (`trained`), against the values resolved.
MAX_SAMPLES = MAX_LATENT
MAX_DECODER_ROWS = MAX_IMAGES

batch_flag = int_in(1, MAX_IMAGES)
hidden_flag = int_in(1, MAX_HIDDEN)
latent_flag = int_in(1, MAX_LATENT)
epochs_flag = int_in(1, MAX_EPOCHS)
steps_flag = int_in(0, MAX_IMAGES)              # 0: the whole epoch
samples_flag = int_in(1, MAX_SAMPLES)
seed_flag = int_in(0, MAX_SEED)


def impl_list(text):
    """An argparse type: comma-separated implementation names (benchmarks/peers.py), each one
    known, at least one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = peers.all_names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        found = f"unknown {', '.join(map(repr, unknown))}" if unknown else f"none in {text!r}"
        raise argparse.ArgumentTypeError(f"{found}; expected comma-separated names of: "
                                         f"{', '.join(known)}")
    return names


def size_list(size):
    """An argparse type: comma-separated integers, each of the argparse type `size`, at least
    one, none twice."""
    def parse(text):
        values = [size(v.strip()) for v in text.split(",") if v.strip()]
        if not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, at least one "
                                             f"and none twice, got {text!r}")
        return values
    return parse


def check_output(path, flag):
    """Refuse, before anything is timed, an output `path` of `flag` that could not be written
    once the timing is done (numpyvae.run.folder.check_output_path) or that is a file of a run."""
    check_output_path(path, flag)
    refuse_run_file(path, flag)


def write_json(path, result, flag="--json", replace=False):
    """`result` as indented standard JSON at `path`, atomically: at a new path (check_output
    made sure there was none), or with replace=True over the file this command itself wrote
    before (the sweep's, after each size). Non-finite numbers are refused (ValueError), never
    written as the NaN and Infinity that strict JSON readers reject; the measurements have been
    checked finite before (check_finite)."""
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    try:
        if not atomic_write(path, lambda f: f.write(text.encode()), replace=replace):
            raise UsageError(f"{flag} {path}: something appeared there while this ran; it is "
                             f"left as it is (the results are printed above)")
    except OSError as e:
        raise OSError(f"cannot write {flag} {path}: {e.strerror or e}") from None


def check_finite(name, seconds):
    """Refuse timings that are not finite positive numbers (a clock that failed, an epoch of
    no work), before any figure is printed from them."""
    if not all(math.isfinite(t) and t > 0 for t in seconds):
        raise BenchmarkError(f"{name}: timings {', '.join(map(repr, seconds))} s are not all "
                             f"finite and positive. Nothing is reported.")


# ---------------------------------------------------------------------------------------------

def reference_losses(setup, ranges):
    """The float64 NumPy oracle: numpyvae (backend "numpy", float64) + Adam from the same
    parameters on the same objective, one loss per step of `ranges`."""
    H, Z = peers.hidden_latent(setup.params)
    ref = nv.VAE(D, H, Z, dtype="float64", activation=setup.activation)
    ref.load_params(setup.params)
    opt = nv.Adam(ref.num_params, "float64", lr=setup.lr)
    gflat, grads = ref.new_grads()
    losses = np.empty(len(ranges))
    for i, (a, b) in enumerate(ranges):
        losses[i], _ = ref.loss_and_grads(setup.X[a:b].astype(np.float64),
                                          setup.E[:, a:b].astype(np.float64), out=grads,
                                          **setup.objective_kwargs())
        opt.step(ref.flat, gflat)
    return losses


def build(names, setup, log=print):
    """The peers for `names`, and [{impl, reason}] for those whose library is missing."""
    built, skipped = [], []
    for name in names:
        try:
            built.append(peers.make(name, setup))
        except peers.Missing as why:
            log(f"  skipped {name}: {why}")
            skipped.append(dict(impl=name, reason=str(why)))
    return built, skipped


def validate(built, setup, ranges, log=print):
    """Run each peer's first epoch (untimed: it compiles and warms up) and check its first
    steps' losses against the float64 reference; raise ValidationError on the first mismatch."""
    steps = ranges[:VALIDATE_STEPS]
    ref = reference_losses(setup, steps)
    tol = TOLERANCE[setup.dtype]
    for peer in built:
        t = time.perf_counter()
        losses = peer.epoch(ranges)
        if peer.floor:
            continue
        losses = np.asarray(losses, np.float64)[:len(steps)]
        if len(losses) != len(steps):
            raise ValidationError(f"{peer.name}: {len(losses)} losses from its first "
                                  f"{len(steps)} steps. Nothing was timed.")
        err = np.abs(losses - ref) / np.abs(ref)                                  # (steps,)
        bad = np.flatnonzero(~(err <= tol))                                       # NaN is bad
        if len(bad):
            i = bad[0]
            raise ValidationError(
                f"{peer.name}: loss {float(losses[i])!r} at step {i + 1} (batch rows "
                f"{steps[i][0]}:{steps[i][1]}), the float64 NumPy reference trained the same "
                f"way gives {float(ref[i])!r}: relative error {err[i]:.2e} > {tol:g}. "
                f"Nothing was timed.")
        log(f"  validated {peer.name}: first {len(steps)} losses within {err.max():.1e} "
            f"of the float64 reference (first epoch {time.perf_counter() - t:.1f} s, untimed)")


def time_epochs(built, ranges, repeats, scale):
    """{name: [seconds per epoch, ...]}, taken round-robin: repeat r times every
    implementation's epoch r in turn, so a slow spell of a shared machine lands on all of them
    alike instead of on whichever happened to be running. Warm-up is the validation epoch."""
    times = {peer.name: [] for peer in built}
    for _ in range(repeats):
        for peer in built:
            time.sleep(SETTLE)
            t = time.perf_counter()
            peer.epoch(ranges)
            times[peer.name].append((time.perf_counter() - t) * scale)
    return times


# The competitor of --busy: one CPU-bound process, as another user's job on a shared machine.
BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def competing_process():
    """One other CPU-bound process for the length of the block, stopped however it ends."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE)                       # running before the first epoch is timed
        yield proc
    finally:
        proc.kill()
        proc.wait()


def measure(names, setup, ranges, repeats, log=print, busy=False):
    """Build, validate, then time round-robin: ([{impl, seconds_per_epoch, images_per_s,
    epochs}], skipped). `ranges` may be part of an epoch; seconds are scaled to all of X.
    busy: then time them again beside one other CPU-bound process (competing_process), adding
    busy_seconds_per_epoch, busy_epochs and slowdown (busy / quiet) to each row."""
    built, skipped = build(names, setup, log)
    if not built:
        raise BenchmarkError(f"none of {', '.join(names)} can run here (see the lines above); "
                             f"install one, or ask --impls for another")
    validate(built, setup, ranges, log)
    n, timed = len(setup.X), sum(b - a for a, b in ranges)
    rows = []
    notes = start(built, ranges, log)
    for name, times in time_epochs(built, ranges, repeats, n / timed).items():
        check_finite(name, times)
        s = statistics.median(times)
        rows.append(dict(impl=name, seconds_per_epoch=s, images_per_s=n / s, epochs=times,
                         **({"start": notes[name]} if name in notes else {})))
    if busy:
        log(f"  timing again beside one other CPU-bound process ({BUSY_LOOP!r})")
        with competing_process():
            notes = start(built, ranges, log)
            busy_times = time_epochs(built, ranges, repeats, n / timed)
        for r in rows:
            times = busy_times[r["impl"]]
            check_finite(f"{r['impl']} (busy)", times)
            s = statistics.median(times)
            r.update(busy_seconds_per_epoch=s, busy_epochs=times,
                     slowdown=s / r["seconds_per_epoch"],
                     **({"busy_start": notes[r["impl"]]} if r["impl"] in notes else {}))
    return rows, skipped


def start(built, ranges, log):
    """{name: note} from each peer's `start` (numpyvae's choice of BLAS threads), before a
    timed round-robin, in the conditions it will be timed in."""
    notes = {peer.name: peer.start(ranges) for peer in built if peer.start}
    for name, note in notes.items():
        log(f"  {name}: {note}")
    return notes


# What is trained, and its defaults: the notebook's network and the ELBO. --preset takes the
# values of numpyvae.train's preset for these (its schedule, initialisation and binarisation
# are not what a step's speed depends on); a flag given on the command line wins over both.
TRAINED = dict(batch_size=128, hidden_dim=200, latent_dim=20, activation="leaky_relu",
               objective="elbo", samples=1, estimator=None)


def build_parser():
    p = argument_parser("python -m benchmarks.throughput", __doc__)
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="numpyvae.train's preset for the network, batch and objective (e.g. "
                        "burda2015-iwae: batch 20, 784-200-200-50 tanh, IWAE K=5); the flags "
                        "below win over it (default: none)")
    p.add_argument("--batch-size", type=batch_flag, default=None,
                   help="default 128, or the preset's")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="default float32")
    p.add_argument("--epochs", type=epochs_flag, default=3, help="timed epochs per implementation; "
                   "the median is reported (default 3)")
    p.add_argument("--steps", type=steps_flag, default=0, help="time only the first N batches of "
                   "each epoch and scale to a full epoch, for quick runs (default 0: all)")
    p.add_argument("--hidden-dim", type=hidden_flag, default=None,
                   help="default 200, or the preset's")
    p.add_argument("--latent-dim", type=latent_flag, default=None,
                   help="default 20, or the preset's")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                   help="default leaky_relu (the notebook's), or the preset's")
    p.add_argument("--objective", choices=OBJECTIVES, default=None,
                   help="elbo or iwae, the importance-weighted bound of --samples (default "
                        "elbo, or the preset's)")
    p.add_argument("--samples", type=samples_flag, default=None,
                   help="noise samples K per image; --objective iwae alone bounds with K = 1 "
                        "(default 1, or the preset's)")
    p.add_argument("--estimator", choices=ESTIMATORS, default=None,
                   help="the iwae objective's encoder gradient (default standard, or the "
                        "preset's)")
    p.add_argument("--impls", type=impl_list, default=None, help="comma-separated "
                   f"implementations to run (default all: {', '.join(peers.all_names())})")
    p.add_argument("--ll-images", type=int_in(0, MAX_TEST_IMAGES), default=20,
                   help="test images for the k-sample log-likelihood (default 20; 0 skips it)")
    p.add_argument("--k", type=int_in(1, MAX_K), default=5000,
                   help="importance samples per image for the log-likelihood (default 5000)")
    p.add_argument("--no-torch", action="store_true", help="skip the Torch rows")
    p.add_argument("--busy", action="store_true",
                   help="also time every epoch beside one other CPU-bound process, as on a "
                        "shared machine, and report each implementation's slowdown")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="where MNIST is (default: numpyvae.data's, ~/datasets)")
    p.add_argument("--seed", type=seed_flag, default=0, help="the data order, ε and the initial "
                   "parameters (default 0)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the results to this file (default: none)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(lambda: _throughput(trained(args), argv))


def trained(args):
    """args with what is trained resolved: each of TRAINED's settings from its flag, else from
    --preset, else TRAINED's default; an estimator without iwae, more ε than MAX_SAMPLES allows
    or more decoder rows than MAX_DECODER_ROWS is a usage error, naming where each value came
    from."""
    preset = PRESETS[args.preset] if args.preset else {}
    given = {name for name in TRAINED if getattr(args, name) is not None}
    for name, default in TRAINED.items():                 # objective before estimator
        if name not in given and (name != "estimator" or args.objective == "iwae"):
            setattr(args, name, preset.get(name, default))     # a preset's, for its bound only

    def flag(name):                        # "--samples 5", and where it came from if not typed
        value = f"--{name.replace('_', '-')} {getattr(args, name)}"
        if name in given:
            return value
        return value + (f" (--preset {args.preset}'s)" if name in preset else " (its default)")
    try:
        args.objective, args.estimator = check_objective(args.objective, args.estimator)
    except ValueError as e:
        raise UsageError(f"--estimator {args.estimator}: {e}; use --objective iwae, or drop "
                         f"--estimator") from None
    if args.samples * args.latent_dim > MAX_SAMPLES:
        raise UsageError(f"{flag('samples')} × {flag('latent_dim')} = "
                         f"{args.samples * args.latent_dim} noise values per image; at most "
                         f"{MAX_SAMPLES} (ε for every training image would pass 1 GB in "
                         f"float32): lower --samples or --latent-dim")
    if args.samples * args.batch_size > MAX_DECODER_ROWS:
        raise UsageError(f"{flag('batch_size')} × {flag('samples')} = "
                         f"{args.samples * args.batch_size} decoder rows a step; at most "
                         f"{MAX_DECODER_ROWS} (each row a {D}-pixel image in every workspace): "
                         f"lower --batch-size or --samples")
    return args


def _throughput(args, argv):
    """main's work: returns 0 once the tables are printed (and --json written), 1 when a
    measurement cannot be reported (BenchmarkError)."""
    names = choose(args.impls, args.no_torch)
    if args.json is not None:
        check_output(args.json, "--json")
    try:
        result = bench(args, names, argv)
    except BenchmarkError as e:
        say(f"error: {one_line(e)}")
        return 1
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {one_line(args.json)}")
    return 0


def bench(args, names, argv):
    """Validate and time `names` as `args` asks; prints the tables and returns the JSON's
    dict."""
    info = machine.report("benchmarks.throughput", argv)

    dtype, H, Z, bs = args.dtype, args.hidden_dim, args.latent_dim, args.batch_size
    X = load_train(args.data_dir, dtype, args.seed)                           # (N, D)
    N = len(X)
    E = noise(N, Z, dtype, args.seed, args.samples)                           # (K, N, Z)
    ranges = batches(N, bs, args.steps)
    n_full = len(batches(N, bs, 0))
    print(f"data: MNIST train, {N} images, batch {bs} ({n_full} steps/epoch), hidden {H}, "
          f"latent {Z}, {args.activation}, {objective_words(args)}, {dtype}; timing "
          f"{len(ranges)} steps x {args.epochs} epochs"
          + (", scaled to a full epoch" if len(ranges) != n_full else ""))

    params = nv.VAE(D, H, Z, dtype=dtype, seed=args.seed).params
    setup = peers.Setup(params, X, E, dtype, lr=1e-3, activation=args.activation,
                        objective=args.objective, estimator=args.estimator)
    rows, skipped = measure(names, setup, ranges, args.epochs, busy=args.busy)
    for r in rows:
        print(f"  timed {r['impl']}: " + ", ".join(f"{t:.3f}" for t in r["epochs"]) + " s"
              + ("; busy: " + ", ".join(f"{t:.3f}" for t in r["busy_epochs"]) + " s"
                 if args.busy else ""))

    by = {r["impl"]: r["seconds_per_epoch"] for r in rows}
    t_torch, t_floor = by.get(TORCH), by.get(FLOOR)
    w = max(len(r["impl"]) for r in rows) + 2
    print(f"\n{'implementation':<{w}}{'s/epoch':>9}{'images/s':>11}{'x torch eager':>15}"
          f"{'x floor':>9}" + (f"{'busy s/epoch':>14}{'slowdown':>10}" if args.busy else ""))
    for r in rows:
        s = r["seconds_per_epoch"]
        r.update(vs_torch_eager=s / t_torch if t_torch else None,
                 vs_floor=s / t_floor if t_floor else None)
        print(f"{r['impl']:<{w}}{s:>9.3f}{r['images_per_s']:>11.0f}"
              f"{(f'{s / t_torch:.2f}' if t_torch else '-'):>15}"
              f"{(f'{s / t_floor:.2f}' if t_floor else '-'):>9}"
              + (f"{r['busy_seconds_per_epoch']:>14.3f}{r['slowdown']:>9.2f}x"
                 if args.busy else ""))

    ll_rows = []
    if args.ll_images:
        ll_rows = bench_log_likelihood(args, params, dtype)
    return dict(machine=info, settings=vars(args), epoch=rows, skipped=skipped,
                log_likelihood=ll_rows)


def objective_words(args):
    """"−ELBO (K=1)" or "IWAE K=5 (standard)": what the epochs train, for the data line."""
    if args.objective == "elbo":
        return f"−ELBO (K={args.samples})"
    return f"IWAE K={args.samples} ({args.estimator})"


# In float32 each log p(x|z) sums 784 terms of a ≈ 550-nat total, ≈ 550 · 6e-8 · √784 ≈ 1e-3
# nats of rounding before the log-sum-exp (tests/math/test_backends.py states the same).
LL_TOLERANCE = 2e-3


def bench_log_likelihood(args, params, dtype):
    """k-sample log-likelihood of the first test images, all from the same initial parameters
    and the same ε stream; validated against the NumPy path before reporting."""
    try:
        images, _ = data.load("mnist", split="test", data_dir=args.data_dir)
    except data.DataError as err:
        raise DataError(f"benchmarks.throughput needs MNIST test for --ll-images: "
                             f"{err}") from None
    x = (images[:args.ll_images].reshape(-1, D) >= 128).astype(dtype)        # (n, D)
    H, Z = args.hidden_dim, args.latent_dim
    models = {}
    for backend in ("numba", "numpy"):
        models[backend] = nv.VAE(D, H, Z, dtype=dtype, backend=backend,
                                 activation=args.activation)
        models[backend].load_params(params)
    # numba as `evaluate` runs it: the BLAS threads timed and chosen, the cores left as workers
    fast = models["numba"]
    count, line = choose_threads(threads.AUTO, fast, x, args.k)
    workers = threads.workers(count)
    print(f"  numpyvae numba, log-likelihood: {line or f'BLAS threads: {count}'}; "
          f"{workers} worker{'s' * (workers > 1)}, as evaluate chooses")

    def numba_run(seed, k):
        with threads.limited(count):
            return likelihood.log_likelihood(fast, x, k, np.random.default_rng(seed),
                                             workers=workers)
    runs = [("numpyvae numba", numba_run),
            ("numpyvae numpy", lambda seed, k: likelihood.log_likelihood(
                models["numpy"], x, k, np.random.default_rng(seed)))]
    if not args.no_torch:
        try:
            torch = peers.need_torch()
        except peers.Missing as why:
            print(f"  skipped {TORCH} (log-likelihood): {why}")
        else:
            from reference.model import from_params   # torch with it: an optional peer
            from reference.model import log_likelihood as torch_log_likelihood # (torch's peer)
            tm = from_params(params, dtype=torch.float32 if dtype == "float32" else torch.float64,
                             activation=args.activation)
            runs.append((TORCH, lambda seed, k: torch_log_likelihood(
                tm, torch.from_numpy(x), k, np.random.default_rng(seed))))
    # Validated before anything is timed (the untimed first call also compiles): with the same
    # ε, every estimate equals the NumPy path's to LL_TOLERANCE nats per image.
    results = {name: run(123, args.k) for name, run in runs}
    base = results["numpyvae numpy"]
    for name, res in results.items():
        diff = float(np.max(np.abs(res - base)))
        if not diff <= LL_TOLERANCE:
            raise ValidationError(f"log-likelihood: {name} differs from the NumPy path by "
                                  f"{diff:.2e} nats (> {LL_TOLERANCE:g}). Nothing was timed.")
    # the floor: the same matrix products alone (nothing to validate; warmed up here)
    floor = peers.log_likelihood_floor(params, len(x), dtype)
    floor(args.k)
    runs.append((FLOOR, lambda seed, k: floor(k)))
    times = {name: [] for name, _ in runs}
    for _ in range(args.epochs):                                      # round-robin, as epochs
        for name, run in runs:
            time.sleep(SETTLE)                   # the previous one's threads stop spinning
            t = time.perf_counter()
            run(123, args.k)
            times[name].append(time.perf_counter() - t)
    for name, _ in runs:
        check_finite(f"log-likelihood: {name}", times[name])
    rows = [dict(impl=name, seconds=statistics.median(times[name]), runs=times[name],
                 **({"mean_log_px": float(np.mean(results[name]))} if name in results else {}))
            for name, _ in runs]
    rows[0].update(blas_threads=count, workers=workers)                  # numpyvae numba's
    t_torch = next((r["seconds"] for r in rows if r["impl"] == TORCH), None)
    t_floor = next(r["seconds"] for r in rows if r["impl"] == FLOOR)
    print(f"\nlog-likelihood, k = {args.k}, {len(x)} test images, {dtype}, median of "
          f"{args.epochs} runs (same initial parameters and ε for all; the floor: the same "
          f"matrix products alone)")
    print(f"{'implementation':<26}{'seconds':>9}{'x torch eager':>15}{'x floor':>9}"
          f"{'mean log p(x)':>15}")
    for r in rows:
        r["vs_torch_eager"] = r["seconds"] / t_torch if t_torch else None
        r["vs_floor"] = r["seconds"] / t_floor
        ratio = f"{r['vs_torch_eager']:.2f}" if t_torch else "-"
        mean = f"{r['mean_log_px']:.3f}" if "mean_log_px" in r else "-"
        print(f"{r['impl']:<26}{r['seconds']:>9.3f}{ratio:>15}{r['vs_floor']:>9.2f}{mean:>15}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
