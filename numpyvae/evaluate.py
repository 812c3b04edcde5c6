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
import sys
import time

from .run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np
    from tqdm import tqdm

    from . import threads
    from .errors import UsageError
    from .likelihood import active_units, log_likelihood
    from .run import arithmetic
    from .run.checkpoint import load_model
    from .run.cli import (add_checkpoint_argument, argument_parser, int_in, one_line,
                          run_command, say)
    from .run.config import BY_NAME, DATA_DIR_FLAG, MAX_BATCH, MAX_LIMIT, MAX_SEED
    from .run.evaluation import (HOLDOUT_STREAMS, IMPORTANCE_STREAM, TEST_STREAMS, data_folder,
                                 eval_inputs, evaluate_test, split_images, training_now)
    from .run.memory import check_memory, likelihood_bytes
    from .run.probe import PROBE_IMAGES, choose_threads, expected_time
    from .run.results import check_json_path, refuse_non_finite, write_json


# Importance samples per image: 200 times the literature's 5,000, and hours per image here; the
# bound keeps the memory estimate and the forecast in range (config.py bounds the rest).
MAX_K = 10**6


def build_parser(prog="python -m numpyvae.evaluate"):
    p = argument_parser(prog, __doc__)
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


def main(argv=None, prog="python -m numpyvae.evaluate"):
    args = build_parser(prog).parse_args(argv)
    # An evaluation that overflows ends in a result that is not finite, refused in one line
    # (refuse_non_finite); numpy's warnings on the way there would only bury that line.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run_command(lambda: _evaluate(args),
                           os_error=lambda e: f"{e.filename or args.checkpoint}: "
                                              f"{e.strerror or e}")


def _evaluate(args):
    """main's work: returns 0 once the numbers are printed (and --json written)."""
    if args.blas_threads != threads.AUTO and threads.too_many(args.blas_threads):
        raise UsageError(threads.too_many(args.blas_threads))
    if args.json is not None:
        check_json_path(args.json, reading=args.checkpoint)
    note = training_now(args.checkpoint)         # a run still training: its latest epoch's
    if note:
        say(note)
    model, cfg = load_model(args.checkpoint)
    images = split_images(cfg, args.split, data_folder(
        args.data_dir, cfg, ("test",) if args.split == "test" else ("train",)))
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
    run_count, line = threads.fitted(cfg["blas_threads"])     # the run's, where it fits
    if line:
        say(f"−ELBO: {line}")
    with threads.limited(run_count):
        short = threads.shortfall(run_count)
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
        arith = arithmetic.record()
        say(arithmetic.describe(arith))
        say_if_trained_otherwise(cfg, arith)
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
                  blas_threads=count, workers=workers, arithmetic=arith)
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


def say_if_trained_otherwise(cfg, arith):
    """A line when the run's last recorded arithmetic (threads aside: the −ELBO runs with the
    run's own) is not this one: then the −ELBO differs from metrics.csv's in its last digits."""
    trained = (cfg.get("arithmetic") or [{}])[-1]
    if "numpy" not in trained:                # none recorded, or the PyTorch reference's
        return
    diffs = arithmetic.differences(trained, dict(arith, blas_threads=trained.get("blas_threads")))
    if diffs:
        say(f"the run trained with other arithmetic ({', '.join(diffs)}): its −ELBO here may "
            f"differ from metrics.csv's in the last digits")


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
