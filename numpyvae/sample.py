"""`python -m numpyvae.sample CHECKPOINT --n 64 --out FILE.png`: generate digits.

Decodes z ~ N(0, I) (the prior) into Bernoulli means θ and saves them as a grid. With
--interpolate, decodes the straight line between the latent means μ of two test digits.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt_io
from . import data, plots
from .evaluate import load_model
from .train import _nonnegative_int, _positive_int, eval_generator


def build_parser():
    p = argparse.ArgumentParser(prog="python -m numpyvae.sample", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a run folder (holding checkpoint.npz) or a checkpoint file")
    p.add_argument("--n", type=_positive_int, default=64, help="digits to generate (default 64)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--interpolate", action="store_true",
                   help="decode the line between two test digits' latent means instead")
    p.add_argument("--between", type=_nonnegative_int, nargs=2, default=(0, 1),
                   metavar=("I", "J"), help="indices of the two test digits (default 0 1)")
    p.add_argument("--steps", type=_positive_int, default=10,
                   help="points on the line, ends included (default 10)")
    p.add_argument("--data-dir", default=None, help="where the dataset is (default ~/datasets)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        print(f"error: --out {out}: expected a .png file name", file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(f"error: --out {out}: the folder {out.parent} does not exist", file=sys.stderr)
        return 2
    try:
        model, cfg = load_model(args.checkpoint)
        if args.interpolate:
            images, _ = data.load(cfg["dataset"], "test", args.data_dir)
            i, j = args.between
            if max(i, j) >= len(images):
                print(f"error: --between {i} {j}: the test split has {len(images)} images",
                      file=sys.stderr)
                return 2
            flat = images.reshape(len(images), -1)
            x = data.batch_into(flat, np.array([i, j]), cfg["binarize"],
                                eval_generator(cfg["seed"], 3),
                                np.empty((2, flat.shape[1]), model.dtype))
            mu, _ = model.encode(x)                                      # (2, Z)
            t = np.linspace(0, 1, max(args.steps, 2))[:, None]             # (S, 1)
            theta = model.decode((1 - t) * mu[0] + t * mu[1])              # (S, D)
            plots.interpolation(out, theta)
        else:
            rng = np.random.default_rng(args.seed)
            plots.samples(out, model.decode(rng.standard_normal((args.n, model.latent_dim))))
    except (data.DataError, ckpt_io.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
