"""`python -m reference.evaluate RUN_DIR_OR_CHECKPOINT`: a numpyvae run evaluated by PyTorch.

The second opinion on `python -m numpyvae.evaluate`: the checkpoint's parameters loaded into the
reference `Model` (reference/model.py, `load_state_dict(strict=True)`), the same test images
with the same fixed binarization, and the same ε streams, drawn in the same order — so the two
print the same test −ELBO, importance-weighted log p(x) (Burda et al. 2015, eq. 8) and active
units up to float rounding, computed by independent code.

torch (reference/model.py) is loaded inside the command's work (numpyvae.run.cli.run_command),
once the request is checked: a refused request never waits the seconds it takes.
"""
import sys
import time

from numpyvae.run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np

    from numpyvae import data
    from numpyvae.datasets.fetch import MAX_TRAIN_IMAGES
    from numpyvae.errors import CheckpointError, UsageError
    from numpyvae.run import arithmetic, checkpoint
    from numpyvae.run.cli import (add_checkpoint_argument, argument_parser, int_in, one_line,
                                  run_command, say)
    from numpyvae.run.config import DATA_DIR_FLAG
    from numpyvae.run.evaluation import (IMPORTANCE_STREAM, data_folder, eval_generator,
                                         eval_inputs, training_now)
    from numpyvae.run.results import check_json_path, non_finite, write_json

MAX_IMAGES = MAX_TRAIN_IMAGES    # no split is larger: a larger --limit or --batch is all of it
MAX_K = 10**6                    # 200 × the literature's 5000: some 10 h on the test split
MAX_SEED = 2**64 - 1             # reference.train's: torch.manual_seed's (numpy's: any)


def build_parser():
    p = argument_parser("python -m reference.evaluate", __doc__)
    add_checkpoint_argument(p)
    p.add_argument("--k", type=int_in(1, MAX_K), default=5000,
                   help="importance samples per image (default 5000)")
    p.add_argument("--limit", type=int_in(0, MAX_IMAGES), default=0,
                   help="only the first N test images (default 0: all)")
    p.add_argument("--batch", type=int_in(1, MAX_IMAGES), default=25,
                   help="images per batch, as numpyvae's (default 25)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0,
                   help="seed of the k samples, as numpyvae's (default 0)")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="where the dataset is (default: the run's --data-dir, else ~/datasets)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: CUDA → MPS → CPU)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(lambda: _evaluate(args))


def _evaluate(args):
    """main's work: returns 0 once the numbers are printed (and --json written)."""
    from reference.model import pick_device   # torch with it, once the request is checked
    try:
        device = pick_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from None
    note = training_now(args.checkpoint)         # a run still training: its latest epoch's
    if note:
        say(note)
    ck = checkpoint.load(args.checkpoint)
    if args.json is not None:
        check_json_path(args.json, reading=args.checkpoint)
    images, _ = data.load(ck.config["dataset"], "test", data_folder(args.data_dir, ck.config))
    return evaluate(ck, images, device, args)


def evaluate(ck, images, device, args):
    """The checkpoint `ck` evaluated on the test `images` by the Torch Model; prints the results
    and writes --json."""
    import torch                                         # loaded by _evaluate already
    from reference.model import from_params, log_likelihood, neg_elbo_parts # torch's, as above
    cfg, dtype = ck.config, ck.config["dtype"]
    model = from_params(ck.params, dtype=getattr(torch, dtype), device=device,
                        activation=cfg["activation"])
    arith = arithmetic.torch_record(torch, device)
    print(arithmetic.describe(arith), flush=True)
    images = images[:args.limit] if args.limit else images
    n, mode, seed = len(images), cfg["binarize"], cfg["seed"]
    xs = eval_inputs(images, seed, mode, dtype)       # (n, D): the test split as numpyvae sees it
    x_all = torch.from_numpy(xs).to(device)
    rng_eps, recon, kl = eval_generator(seed, 2), 0.0, 0.0
    for start in range(0, n, 1000):                      # ε stream 2, as numpyvae's evaluate_test
        x = x_all[start:start + 1000]
        eps = rng_eps.standard_normal((len(x), cfg["latent_dim"]), dtype=dtype)
        r, d = neg_elbo_parts(model, x, torch.from_numpy(eps).to(device))
        recon, kl = recon + r, kl + d
    with torch.no_grad():
        means = model.Encoder(x_all)[0].double()
    A = means.var(dim=0, unbiased=False).cpu().numpy()                      # (Z,)
    active = int((A > 1e-2).sum())
    rng, total = np.random.default_rng([args.seed, IMPORTANCE_STREAM]), 0.0
    t0 = time.perf_counter()
    for start in range(0, n, args.batch):
        total += log_likelihood(model, x_all[start:start + args.batch], args.k, rng).sum()
    seconds = time.perf_counter() - t0
    result = dict(implementation=f"torch {torch.__version__} {device}", split="test",
                  binarize=mode, n_images=n, k=args.k, log_px=total / n,
                  neg_elbo=(recon + kl) / n, recon=recon / n, kl=kl / n, active_units=active,
                  latent_dim=cfg["latent_dim"], seed=args.seed, seconds=seconds,
                  arithmetic=arith)
    bad = non_finite(result)
    if bad:                                   # weights that overflow: no number to report
        raise CheckpointError(f"{args.checkpoint}: the Torch Model evaluates it to {bad}, not "
                              f"a finite number; there is nothing to report")
    print(f"reference (torch {torch.__version__}, {device}): {cfg['dataset']} test split, "
          f"{n} images, {mode} binarization:")
    print(f"  −ELBO                 {result['neg_elbo']:10.3f} nats/image  "
          f"(recon {result['recon']:.3f} + KL {result['kl']:.3f})")
    print(f"  log p(x) ≈ L_k, k={args.k:<5}{result['log_px']:10.3f} nats/image  ({seconds:.1f} s)")
    print(f"  active units          {active:10d} of {cfg['latent_dim']}", flush=True)
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {one_line(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
