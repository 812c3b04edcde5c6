"""`python -m numpyvae.evaluate RUN_DIR_OR_CHECKPOINT`: test −ELBO and log p(x) per image.

Prints the test −ELBO (one ε per image), the importance-weighted estimate of log p(x) with k
samples (Burda et al. 2015; k = 5000 as in the literature), in nats per image, and the number
of active latent units (Burda et al.'s definition), with the split, binarization and k they
were computed with; `--json PATH` writes them too. A dynamically binarized split is one fixed
draw (the run's evaluation stream), the same the training CLI evaluates on. `--split holdout`
evaluates a `--holdout` run's held-out training images — where its choices are to be made,
never on the test set.

log p(x) runs with the BLAS threads `--blas-threads` asks for; `auto` (the default) times a
few of its chunks with each count, as training does (numpyvae/threads.py), and the JSON records
the count: float32 results differ between counts in their last bits (~1e-6 nats). Cores the
count leaves free become workers that decode separate blocks of each chunk (threads.workers;
recorded as `workers`), which changes the time, never the numbers. The −ELBO
runs with the run's own count, as training evaluated it: on the images the run evaluated (its
--limit), it is the last test −ELBO of the run's metrics.csv, bit for bit.
"""
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backend as backends
from . import data, threads
from .checkpoint import CheckpointError, load_model
from .cli import (UsageError, add_checkpoint_argument, argument_parser, check_output_path, int_in,
                  one_line, run_command, say)
from .config import BY_NAME, DATA_DIR_FLAG, MAX_BATCH, MAX_LIMIT, MAX_SEED
from .likelihood import ROWS, active_units, log_likelihood, neg_elbo_per_image
from .memory import check_memory, likelihood_bytes
from .runfolder import OutputNames, atomic_write, refuse_run_file, remove_stale_temp_files
from .runlock import RunLocked, lock_if_run_folder


# ------------------------------------------------- evaluation helpers (train's per-epoch −ELBO too)

# The random streams: each is np.random.default_rng([seed, purpose]) (or the same SeedSequence),
# so no part of a run shifts another's draws.
#   1     training: the epoch order, dynamic binarization and ε   train.train_generator
#   2, 3  the test set's ε and its one binarization draw          evaluate_test, eval_inputs
#   4     the pictures                                            plots.py
#   5     evaluate's importance samples (seed: evaluate --seed)   evaluate.py, reference/evaluate.py
#   6, 7  the held-out images' ε and binarization (--holdout)     evaluate_test, eval_inputs
# The model's initialisation draws from default_rng(seed) itself (model.VAE).
TEST_STREAMS, HOLDOUT_STREAMS, IMPORTANCE_STREAM = (2, 3), (6, 7), 5


def eval_generator(seed, purpose):
    """A separate, fixed stream for evaluation (`purpose`: the table above)."""
    return np.random.default_rng([seed, purpose])


def eval_inputs(images, seed, mode, dtype, stream=TEST_STREAMS[1]):
    """The images as the run's evaluation sees them, (N, D) of `dtype`: binarized by one draw
    of its fixed binarization stream — image i gets the same draw here as in evaluate_test's
    chunks (the stream is consumed image by image, in order)."""
    flat = images.reshape(len(images), -1)                                      # (N, D)
    return data.batch_into(flat, np.arange(len(flat)), mode, eval_generator(seed, stream),
                           np.empty(flat.shape, dtype))


def evaluate_test(model, images, seed, mode, batch=1000, streams=TEST_STREAMS):
    """Test −ELBO per image and its two parts, each a float (nats/image), with the run's fixed
    evaluation ε and binarization (the `streams` of `seed`; `mode` one of data.BINARIZE_MODES):
    a dynamically binarized image is one fixed draw, the same at every evaluation."""
    rng_eps, rng_bin = eval_generator(seed, streams[0]), eval_generator(seed, streams[1])
    flat = images.reshape(len(images), -1)
    buf = np.empty((min(batch, len(flat)), flat.shape[1]), model.dtype)
    recon = kl = 0.0
    for start in range(0, len(flat), batch):
        idx = np.arange(start, min(start + batch, len(flat)))
        x = data.batch_into(flat, idx, mode, rng_bin, buf)
        eps = rng_eps.standard_normal((len(idx), model.latent_dim), dtype=model.dtype)
        r, d = neg_elbo_per_image(model, x, eps)              # (B,) reconstruction, (B,) KL
        recon += r.sum()
        kl += d.sum()
    n = len(flat)
    return (recon + kl) / n, recon / n, kl / n


# ---------------------------------------------------------------------------- outputs

def check_json_path(path, reading=None):
    """Check a --json PATH before an evaluation, not minutes later when the file is written: it
    must name a file (check_output_path) in a folder that exists, not a file of a run or the
    checkpoint `reading`, and a run folder must not be in use by a training (its lock is taken
    and given back at once; write_json takes it again to write)."""
    refuse_run_file(path, "--json", reading)         # the more telling refusal first
    check_output_path(path, "--json")
    lock = lock_if_run_folder(Path(path).parent)
    if lock is not None:
        lock.release()


def non_finite(values):
    """The entries of `values` ({name: value}) that are not finite numbers, in words ("" if none):
    an evaluation that overflowed has no number to report, and JSON has none to write."""
    return ", ".join(f"{k} = {v}" for k, v in values.items()
                     if isinstance(v, (float, np.floating)) and not math.isfinite(v))


def write_json(path, result, wait=10.0):
    """`result` (a dict) as indented JSON at --json PATH, atomically, holding the lock of a run
    folder while it writes there (and removing what a killed writer left there, as every
    command that writes into a run folder does). A folder held by another command is waited
    for up to `wait` seconds — long enough for another short writer (two evaluations of one run
    finishing together), while a training, which holds its folder for hours, is still refused.
    Standard JSON only: a result that is not finite is refused (CheckpointError), not written
    as NaN."""
    bad = non_finite(result)
    if bad:
        raise CheckpointError(f"--json {path}: {bad} is not a finite number; nothing written")
    text = json.dumps(result, indent=2, allow_nan=False)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock = lock_if_run_folder(Path(path).parent)
            break
        except RunLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        if lock is not None:
            remove_stale_temp_files(Path(path).parent, OutputNames({Path(path).name}))
        if not atomic_write(path, lambda f: f.write(text.encode() + b"\n"), replace=False):
            raise UsageError(f"--json {path}: something appeared there while this ran; it is "
                             f"left as it is (the results are printed above)")
    except OSError as e:
        raise UsageError(f"cannot write --json {path}: {e.strerror or e}") from None
    finally:
        if lock is not None:
            lock.release()


def run_folder_of(checkpoint):
    """The folder of a checkpoint argument: the run folder itself, or a checkpoint file's."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def tidy_run_folder(folder):
    """Remove the temp files a killed writer (sample, evaluate --json, train) left in `folder`,
    for a command that reads the run without writing there. Only when the folder is a run
    folder that is free: its lock is taken for the moment it takes. One that another command
    holds is left alone (that command may be writing them), and so is one that cannot be
    locked or changed (a read-only copy): a reader never fails for another's leftovers."""
    folder = Path(folder)
    with contextlib.suppress(OSError, RunLocked):
        if not any(p.name.startswith(".") and p.name.endswith(".tmp") for p in folder.iterdir()):
            return                                   # nothing to remove: no lock taken
        lock = lock_if_run_folder(folder)
        if lock is not None:
            try:
                remove_stale_temp_files(folder, OutputNames())
            finally:
                lock.release()


# ---------------------------------------------------------------------------- the command

QUICK_K, QUICK_IMAGES = 100, 1000           # the quick look: --k 100 --limit 1000
# Importance samples per image: 200 times the literature's 5,000, and hours per image here; the
# bound keeps the memory estimate and the forecast in range (config.py bounds the rest).
MAX_K = 10**6
# The probe that forecasts an evaluation and chooses its threads: PROBE_K samples of the first
# PROBE_IMAGES images, likelihood.ROWS rows (a NumPy chunk; a quarter of a numba one).
PROBE_K = 200
PROBE_IMAGES = ROWS // PROBE_K


def probe(model, x, k, workers, probe_k=PROBE_K):
    """L_k of the images x with min(k, probe_k) samples (PROBE_K × PROBE_IMAGES rows) on
    `workers` threads, from a Generator of its own, so that the evaluation's draws are
    untouched. Everything an evaluation does is in it — the draws, the workspaces, the
    log-sum-exp — so it forecasts well: chunk_step alone (the choice's) forecast 26 s for an
    evaluation of 31 s (Burda checkpoint, 1,000 images, Zen 3), this 31 s for 29–30 s."""
    log_likelihood(model, x, min(k, probe_k), np.random.default_rng(0), workers=workers)


# Untimed seconds before each count's timing when choosing it: after products on more threads,
# OpenBLAS's idle threads spin for about 0.1 s (its default thread timeout, 2^28 cycles) on
# the core a second worker would use. Timed after 0.03 s, one BLAS thread on two workers took
# 29–36 ms a chunk, after 0.15 s 24–25 ms, against 31–33 ms for two BLAS threads (Zen 3).
CHOOSE_WARM = 0.15


def chunk_step(model, x, k, probe_k=PROBE_K):
    """step() for threads.choose: the log weights of one chunk of L_k on the images x,
    min(k, probe_k) fixed samples each, on the workers of the BLAS count it runs under
    (threads.workers). Each worker count's workspaces are made at its first call and reused,
    as a long evaluation makes them once: making them is slower with more workers (their
    pages are first touched by several threads at once), and would mislead the choice."""
    eps = np.random.default_rng(0).standard_normal((min(k, probe_k), len(x), model.latent_dim),
                                                   dtype=model.dtype)
    made = {}

    def step():
        workers = threads.workers(threads.pool_size())
        if workers not in made:
            made[workers] = backends.log_weights(model, x, eps.shape[0] * len(x), workers)
        made[workers](model, x, eps)
    return step


def choose_threads(requested, model, x, k):
    """threads.resolve for log p(x): (count, line), `auto` timing chunk_step's chunk of the
    images x under each count (CHOOSE_WARM seconds untimed first). benchmarks.throughput
    chooses with it too, so that it times numpyvae as evaluate runs it."""
    return threads.resolve(requested, lambda: chunk_step(model, x, k),
                           f"{min(k, PROBE_K)} samples of {len(x)} images", CHOOSE_WARM)


def expected_time(model, x, k, n, workers, probe_k=PROBE_K):
    """A line saying how long L_k on n images will take here, and how to get a quick estimate
    when that is long: the cost is linear in images × samples, timed on the images x with
    probe_k samples (probe) — once to warm up (kernels, BLAS threads), once on the clock."""
    probe_k = min(k, probe_k)
    for _ in range(2):
        t0 = time.perf_counter()
        probe(model, x, probe_k, workers, probe_k)
    per_sample = (time.perf_counter() - t0) / (len(x) * probe_k)    # seconds per image·sample
    line = f"log p(x) with k={k} on {n:,} images: {duration(per_sample * n * k)} here"
    if per_sample * n * k > 60:
        quick = per_sample * min(n, QUICK_IMAGES) * min(k, QUICK_K)
        line += f"; a quick estimate: --k {QUICK_K} --limit {QUICK_IMAGES} ({duration(quick)})"
    return line


def refuse_non_finite(values, model, checkpoint):
    """CheckpointError when an evaluation's `values` are not finite: a model whose parameters
    overflow the computation (weights of 1e30) has no number to report — an error, never
    `nan` with exit status 0."""
    bad = non_finite(values)
    if bad:
        raise CheckpointError(f"{checkpoint}: its model evaluates to {bad}, not a finite number "
                              f"(its largest parameter is {np.abs(model.flat).max():.3g} in "
                              f"magnitude); there is nothing to report")


def duration(seconds):
    if seconds < 1:
        return "under a second"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def data_folder(flag, cfg):
    """Where a command reads a run's images: --data-dir when given, else the folder the run
    recorded (its config's data_dir, absolute since numpyvae records it so), else None: the
    default, ~/datasets."""
    return flag if flag is not None else cfg.get("data_dir")


def split_images(cfg, split, data_dir=None):
    """The images of `split` as the run drew them: its --limit, then its --holdout (the last
    N training images), off the training split; the test split whole."""
    if split == "test":
        return data.load(cfg["dataset"], "test", data_dir)[0]
    if split == "holdout" and not cfg["holdout"]:
        raise UsageError("--split holdout: this run held no training images out (--holdout 0)")
    images = data.load(cfg["dataset"], "train", data_dir)[0]
    images = images[:cfg["limit"]] if cfg["limit"] else images
    kept, held = data.hold_out(images, cfg["holdout"])
    return held if split == "holdout" else kept


def build_parser():
    p = argument_parser("python -m numpyvae.evaluate", __doc__)
    add_checkpoint_argument(p)
    p.add_argument("--k", type=int_in(1, MAX_K), default=5000,
                   help="importance samples per image (default 5000)")
    p.add_argument("--split", choices=("test", "train", "holdout"), default="test",
                   help="test (default); train: the images the run trained on (without its "
                        "--holdout); holdout: the run's held-out training images, binarized "
                        "and evaluated as its per-epoch holdout_neg_elbo")
    p.add_argument("--limit", type=int_in(0, MAX_LIMIT), default=0,
                   help="evaluate only the first N images of the split (default 0: all; a run "
                        "trained with --limit N evaluated its first N test images per epoch)")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), default=25,
                   help="images per importance-sampling batch (default 25)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help="seed of the k samples (default 0)")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="where the dataset is (default: the run's --data-dir, else ~/datasets)")
    p.add_argument("--blas-threads", type=BY_NAME["blas_threads"].kind.flag,
                   default=threads.AUTO,
                   help="threads of log p(x)'s matrix products: auto (default) times a few "
                        "chunks with each count and takes the fastest; or a count")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the results as JSON (nats per image)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    # An evaluation that overflows ends in a result that is not finite, refused in one line
    # (refuse_non_finite); numpy's warnings on the way there would only bury that line.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run_command(lambda: _evaluate(args),
                           os_error=lambda e: f"{e.filename or args.checkpoint}: "
                                              f"{e.strerror or e}")


def _evaluate(args):
    """main's work: returns 0 once the numbers are printed (and --json written)."""
    if args.json is not None:
        check_json_path(args.json, reading=args.checkpoint)
    model, cfg = load_model(args.checkpoint)
    tidy_run_folder(run_folder_of(args.checkpoint))
    images = split_images(cfg, args.split, data_folder(args.data_dir, cfg))
    streams = HOLDOUT_STREAMS if args.split == "holdout" else TEST_STREAMS
    if args.limit:
        images = images[:args.limit]
    mode = cfg["binarize"]
    n = len(images)
    batch = min(args.batch, n)                 # no importance-sampling batch is larger
    check_memory(likelihood_bytes(n, batch, args.k, cfg["x_dim"], cfg["hidden_dim"],
                                  cfg["latent_dim"], cfg["dtype"]),
                 f"--batch {args.batch} with --k {args.k} on {n:,} images",
                 "use a smaller --batch (or --limit)")
    # The −ELBO with the run's own BLAS threads (None: the environment's, which a run recorded
    # before the setting trained with): training computed its per-epoch test −ELBO so, and the
    # count moves float32 bits, so this is metrics.csv's number for the same images, bit for bit.
    with threads.limited(cfg["blas_threads"]):
        short = threads.shortfall(cfg["blas_threads"])
        if short:
            say(f"−ELBO: {short}")
        neg_elbo, recon, kl = evaluate_test(model, images, cfg["seed"], mode, streams=streams)
    refuse_non_finite(dict(neg_elbo=neg_elbo, recon=recon, kl=kl), model, args.checkpoint)
    xs = eval_inputs(images, cfg["seed"], mode, model.dtype, streams[1])   # (n, D), the same
    active, _ = active_units(model.encode(xs)[0])
    few = xs[:min(batch, PROBE_IMAGES)]
    count, line = choose_threads(args.blas_threads, model, few, args.k)
    if line:
        say(line)
    with threads.limited(count):
        short = threads.shortfall(count)
        if short:
            say(short)
            count = threads.pool_size()
        workers = threads.workers(count)
        if workers > 1:
            say(f"log p(x) on {workers} workers of {count} BLAS thread{'s' * (count > 1)} each "
                f"(the numbers of one such worker, bit for bit)")
        say(expected_time(model, few, args.k, n, workers))
        total, seconds = importance_sampled(model, xs, batch, args, workers)
    refuse_non_finite(dict(log_px=total / n), model, args.checkpoint)
    result = dict(split=args.split, binarize=mode, n_images=n, k=args.k, log_px=total / n,
                  neg_elbo=neg_elbo, recon=recon, kl=kl, active_units=active,
                  latent_dim=model.latent_dim, seed=args.seed, seconds=seconds,
                  blas_threads=count, workers=workers)
    print(f"{cfg['dataset']} {args.split} split, {n} images, {mode} binarization:")
    print(f"  {'−ELBO':<22}{neg_elbo:10.3f} nats/image  (recon {recon:.3f} + KL {kl:.3f})")
    print(f"  {f'log p(x) ≈ L_k, k={args.k}':<22}{total / n:10.3f} nats/image  "
          f"(importance-weighted bound, Burda et al. 2015; {seconds:.1f} s)")
    print(f"  {'active units':<22}{active:10d} of {model.latent_dim}  "
          f"(Var_x E_q[z_u|x] > 0.01)", flush=True)      # shown before --json can fail
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {one_line(args.json)}")
    return 0


def importance_sampled(model, xs, batch, args, workers):
    """(Σ_images L_k, seconds): the estimate over the images xs (n, D), `batch` at a time,
    from the --seed's importance stream, on `workers` threads, with a progress bar."""
    rng = np.random.default_rng([args.seed, IMPORTANCE_STREAM])
    n, total = len(xs), 0.0
    t0 = time.perf_counter()
    with tqdm(total=n, desc=f"log p(x), k={args.k}", unit="image", dynamic_ncols=True) as bar:
        for start in range(0, n, batch):
            x = xs[start:start + batch]
            total += log_likelihood(model, x, args.k, rng, workers=workers).sum()
            bar.update(len(x))
            bar.set_postfix_str(f"log p(x) ≈ {total / (start + len(x)):.3f}", refresh=False)
    return total, time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
