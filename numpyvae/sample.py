"""`python -m numpyvae.sample RUN [--n 64] [--out FILE.png]`: images a trained VAE generates.

Decodes z ~ N(0, I) (the prior) into Bernoulli means θ and saves them as a grid. With
--interpolate, decodes the straight line between the latent means μ of two test images.
Images are decoded CHUNK at a time straight into the picture, so --n 100000 needs the picture's
memory (one byte per pixel), not 100,000 decoded images; a picture that cannot fit in the
memory available is refused before anything is decoded.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

from .run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np

    from . import data
    from .datasets.fetch import MAX_TEST_IMAGES
    from .errors import UsageError
    from .run import plots
    from .run.checkpoint import load_model
    from .run.cli import (add_checkpoint_argument, argument_parser, int_in, one_line,
                          run_command, say)
    from .run.config import DATA_DIR_FLAG, MAX_SEED
    from .run.evaluation import data_folder, eval_inputs, run_folder_of, training_now
    from .run.folder import check_output_path, refuse_run_file, remove_stale_temp_files
    from .run.lock import lock_if_run_folder
    from .run.memory import check_memory, gigabytes

CHUNK = 1024                   # images decoded per call
LINE_COLUMNS = 20              # an interpolation of more steps wraps into rows of this many
# The largest pictures: 10⁷ images are a 7.8 GB grid of 88,564 × 88,564 pixels, 10⁶ steps a
# line 1.4 million pixels tall (PNG allows 2³¹ − 1 a side); the memory check refuses, in one
# line, what does not fit here, and the bounds keep every size in range.
MAX_IMAGES = 10**7
MAX_STEPS = 10**6


def build_parser(prog="python -m numpyvae.sample"):
    p = argument_parser(prog, __doc__)
    add_checkpoint_argument(p)
    p.add_argument("--n", type=int_in(1, MAX_IMAGES), default=64,
                   help=f"images to generate (default 64); above {plots.FIGURE_MAX_IMAGES} the "
                        "grid is written pixel for pixel, without a title")
    p.add_argument("--out", default=None,
                   help="PNG file to write (default: beside the checkpoint, in the run folder: "
                        "sample-seed<seed>-n<n>.png, or interpolation-<I>-<J>.png)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help="seed of the draws z ~ N(0, I) (default 0)")
    p.add_argument("--interpolate", action="store_true",
                   help="decode the line between two test images' latent means instead")
    p.add_argument("--between", type=int_in(0, MAX_TEST_IMAGES - 1), nargs=2, default=None,
                   metavar=("I", "J"), help="with --interpolate: indices of the two test images "
                                            "(default 0 1)")
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), default=None,
                   help="with --interpolate: points on the line, ends included (default 10; more than "
                        f"{LINE_COLUMNS} wrap into rows)")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="where the dataset is, for --interpolate (default: the run's --data-dir, "
                        "else ~/datasets)")
    return p


def decoded(model, latents, n, chunk=CHUNK):
    """θ of n latent points, `chunk` at a time: latents(start, stop) -> (stop − start, Z)."""
    for start in range(0, n, chunk):
        yield model.decode(latents(start, min(n, start + chunk)))        # (b, D)


def prior(rng, latent_dim):
    """z ~ N(0, I), drawn in order: the same numbers as one rng.standard_normal((n, Z))."""
    return lambda start, stop: rng.standard_normal((stop - start, latent_dim))   # (b, Z)


def line(mu0, mu1, steps):
    """Points of the straight line from mu0 to mu1, as np.linspace(0, 1, steps) spaces them."""
    step = 1.0 / max(steps - 1, 1)

    def points(start, stop):
        t = np.arange(start, stop) * step                                # (b,)
        t[np.arange(start, stop) == steps - 1] = 1.0
        return (1 - t)[:, None] * mu0 + t[:, None] * mu1                 # (b, Z)
    return points


INTERPOLATION_FLAGS = {"between": (0, 1), "steps": 10}      # their defaults, with --interpolate


def main(argv=None, prog="python -m numpyvae.sample"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    for name, default in INTERPOLATION_FLAGS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif not args.interpolate:                 # given, and ignored: say so instead
            parser.error(f"--{name} shapes an interpolation: add --interpolate, or drop --{name}")
    if args.interpolate and args.n != parser.get_default("n"):
        parser.error("--n counts generated images; an interpolation's points are --steps")
    return run_command(lambda: _sample(args))


def default_out(args):
    """Where the picture goes without --out: the checkpoint's folder, named after what it shows."""
    folder = run_folder_of(args.checkpoint)
    if args.interpolate:
        return folder / f"interpolation-{args.between[0]}-{args.between[1]}.png"
    return folder / f"sample-seed{args.seed}-n{args.n}.png"


def stamp(args, checkpoint):
    """What a picture shows, stamped into it: the checkpoint (the SHA-256 of its file) and the
    request. The same command run again finds its own picture by it."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    digest = digest.hexdigest()
    request = (dict(interpolate=list(args.between), steps=args.steps) if args.interpolate else
               dict(seed=args.seed, n=args.n))
    return json.dumps(dict(checkpoint_sha256=digest, **request), sort_keys=True)


def _sample(args):
    """main's work: returns 0 once the picture is written. A run folder written into is locked
    while sample works there, and what a killed writer left in it is removed first. A picture
    is never written over anything — but its own earlier copy (the same checkpoint and
    request, by its stamp), so that a command can be run again."""
    out = Path(args.out) if args.out is not None else default_out(args)
    refuse_run_file(out, "--out", reading=args.checkpoint)    # the more telling refusal first
    earlier = plots.stamp_of(out) if os.path.lexists(out) else None    # a picture of ours
    if earlier is None:
        check_output_path(args.out if args.out is not None else out, "--out")   # the default too
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: expected a .png file name")
    n = max(args.steps, 2) if args.interpolate else args.n
    cols = min(n, LINE_COLUMNS) if args.interpolate else int(np.ceil(np.sqrt(n)))
    flag = f"--steps {args.steps}" if args.interpolate else f"--n {args.n}"
    check_memory(plots.grid_bytes(n, cols) + 64 * 2**20, flag,
                 f"ask for fewer (a picture of {n:,} images is "
                 f"{gigabytes(plots.grid_bytes(n, cols))} at one byte per pixel)")
    note = training_now(args.checkpoint)         # a run still training: its latest epoch's
    if note:
        say(note)
    model, cfg = load_model(args.checkpoint)
    checkpoint = Path(args.checkpoint)
    shows = stamp(args, checkpoint / "checkpoint.npz" if checkpoint.is_dir() else checkpoint)
    if earlier is not None and earlier != shows:
        raise UsageError(f"--out {out}: a picture numpyvae drew from another checkpoint, or of "
                         f"another request, is there; it is kept — choose a new name, or move "
                         f"it away first")
    lock = lock_if_run_folder(out.parent, "--out")   # a run folder: not while it trains
    try:
        if lock is not None:
            remove_stale_temp_files(out.parent, {out.name})     # a killed sample's, of it
        if args.interpolate:
            images, _ = data.load(cfg["dataset"], "test", data_folder(args.data_dir, cfg))
            i, j = args.between
            if max(i, j) >= len(images):
                raise UsageError(f"--between {i} {j}: the test split has {len(images)} images")
            x = eval_inputs(images, cfg["seed"], cfg["binarize"], model.dtype)[[i, j]]  # (2, D)
            mu, _ = model.encode(x)                                      # (2, Z)
            plots.grid(out, decoded(model, line(mu[0], mu[1], n), n), n, cols,
                       "decoded along a straight line in z", stamp=shows)
        else:
            rng = np.random.default_rng(args.seed)
            plots.grid(out, decoded(model, prior(rng, model.latent_dim), n), n, cols,
                       f"{n} {plots.NOUNS[cfg['dataset']]} generated from z ~ N(0, I)",
                       stamp=shows)
    finally:
        if lock is not None:
            lock.release()
    print(f"wrote {one_line(out)}" + (" again (the same checkpoint and request)"
                                      if earlier is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
