"""`python -m reference.evaluate RUN_DIR_OR_CHECKPOINT`: a numpyvae run evaluated by PyTorch.

The second opinion on `python -m numpyvae.evaluate`: the checkpoint's parameters loaded into the
reference `Model` (reference/model.py, `load_state_dict(strict=True)`), the same test images
with the same fixed binarization, and the same ε streams, drawn in the same order — so the two
print the same test −ELBO, importance-weighted log p(x) (Burda et al. 2015, eq. 8) and active
units up to float rounding, computed by independent code.

torch is loaded inside the command's work (numpyvae.cli.run_command), not at import: a Ctrl-C
in the seconds that takes is one line, like any other.
"""
import sys
import time

import numpy as np

from numpyvae import checkpoint, data
from numpyvae.cli import (UsageError, add_checkpoint_argument, argument_parser, int_in, one_line,
                          run_command)
from numpyvae.config import DATA_DIR_FLAG
from numpyvae.evaluate import (IMPORTANCE_STREAM, check_json_path, data_folder, eval_generator,
                               eval_inputs, non_finite, write_json)
from numpyvae.fetch import MAX_TRAIN_IMAGES

MAX_IMAGES = MAX_TRAIN_IMAGES    # no split is larger: a larger --limit or --batch is all of it
MAX_K = 10**6                    # 200 × the literature's 5000: some 10 h on the test split
MAX_SEED = 2**64 - 1             # reference.train's: torch.manual_seed's (numpy's: any)


def log_likelihood(model, x, k, rng, rows=5000):
    """L_k per image (float64 numpy (B,)) for x: (B, D) a tensor on the model's device, with
    ε: (S, B, Z) drawn from the numpy Generator `rng` in chunks of S = rows // B samples —
    the order numpyvae.likelihood.log_likelihood draws them in.

    w = log p(x|z) + log p(z) − log q(z|x),  L_k = logsumexp_i w_i − log k."""
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        B = x.shape[0]
        mean, log_var = model.Encoder(x)                               # (B, Z)
        Z = mean.shape[1]
        sigma = torch.exp(0.5 * log_var)                               # (B, Z)
        c = Z * float(np.log(2 * np.pi))
        total = torch.full((B,), -float("inf"), dtype=torch.float64, device=x.device)
        chunk, done = max(1, rows // B), 0
        np_dtype = np.float32 if x.dtype == torch.float32 else np.float64
        while done < k:
            S = min(chunk, k - done)
            eps = torch.from_numpy(rng.standard_normal((S, B, Z), dtype=np_dtype)).to(x.device)
            z = mean + sigma * eps                                     # (S, B, Z)
            logits = model.Decoder.logits(z)                           # (S, B, D)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").sum(-1, dtype=torch.float64)
            log_pz = -0.5 * (z.pow(2).sum(-1, dtype=torch.float64) + c)
            log_qz = -0.5 * (eps.pow(2).sum(-1, dtype=torch.float64) + c
                             + log_var.sum(-1, dtype=torch.float64))
            total = torch.logaddexp(total, torch.logsumexp(log_px + log_pz - log_qz, 0))
            done += S
        return (total - np.log(k)).cpu().numpy()


def neg_elbo_parts(model, x, eps):
    """(recon, kl) summed over the batch, float64.  x: (B, D), eps: (B, Z) tensors."""
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        mean, log_var = model.Encoder(x)
        logits = model.Decoder.logits(mean + torch.exp(0.5 * log_var) * eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(
            dtype=torch.float64)
        kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).sum(dtype=torch.float64)
        return recon.item(), kl.item()


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
    from reference.model import pick_device              # and torch with it
    try:
        device = pick_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from None
    ck = checkpoint.load(args.checkpoint)
    if args.json is not None:
        check_json_path(args.json, reading=args.checkpoint)
    images, _ = data.load(ck.config["dataset"], "test", data_folder(args.data_dir, ck.config))
    return evaluate(ck, images, device, args)


def evaluate(ck, images, device, args):
    """The checkpoint `ck` evaluated on the test `images` by the Torch Model; prints the results
    and writes --json."""
    import torch
    from reference.model import from_params
    cfg, dtype = ck.config, ck.config["dtype"]
    model = from_params(ck.params, dtype=getattr(torch, dtype), device=device,
                        activation=cfg["activation"])
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
                  latent_dim=cfg["latent_dim"], seed=args.seed, seconds=seconds)
    bad = non_finite(result)
    if bad:                                   # weights that overflow: no number to report
        raise checkpoint.CheckpointError(f"{args.checkpoint}: the Torch Model evaluates it to "
                                         f"{bad}, not a finite number; there is nothing to report")
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
