"""`python -m reference.train`: the notebook's training loop in PyTorch, numpyvae's peer.

Trains the reference Model the way `python -m numpyvae.train` trains numpyvae's — same data,
binarization, batch size, shuffling per epoch, torch.optim.Adam with the same learning rate,
epochs and seed — but with PyTorch's own initialisation and noise (torch.manual_seed(seed)),
and prints the test −ELBO per image after each epoch. With --out it writes a run folder as
numpyvae's does: metrics.csv with the same columns (so `diff` compares the two runs),
config.json, and checkpoint.npz in numpyvae's format (the Model's state_dict names are
numpyvae's), which `python -m numpyvae.evaluate` and `numpyvae.sample` read.
"""
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from numpyvae import checkpoint as ckpt_io
from numpyvae import data
from numpyvae.cli import UsageError, argument_parser, nonnegative_int, run_command
from numpyvae.config import Config, add_flags
from numpyvae.runfolder import (folders_to_make, refuse_taken, remove_if_empty, write_config,
                                write_metrics)
from numpyvae.runlock import RunLock
from reference.model import build, neg_elbo, pick_device

COLUMNS = [c for c in ckpt_io.HISTORY_COLUMNS if c != "holdout_neg_elbo"]   # numpyvae's


def build_parser():
    p = argument_parser("python -m reference.train", __doc__)
    # numpyvae.train's flags of the same name: same types, defaults and help
    add_flags(p, ("epochs", "batch_size", "hidden_dim", "latent_dim", "lr", "seed", "binarize",
                  "activation", "data_dir"), defaults=True)
    p.add_argument("--limit", type=nonnegative_int, default=0,
                   help="use only the first N training and test images (default 0: all)")
    p.add_argument("--out", default=None,
                   help="write a run folder here, as numpyvae.train does (default: none, "
                        "print only)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: CUDA → MPS → CPU)")
    return p


def test_neg_elbo(model, test, latent_dim, device):
    """(−ELBO, recon, KL) per image on the binarized test images, one torch.randn ε each."""
    recon = kl = 0.0
    with torch.no_grad():
        for i in range(0, len(test), 1000):
            x = test[i:i + 1000]
            _, parts = neg_elbo(model, x, torch.randn(len(x), latent_dim, device=device))
            recon, kl = recon + parts["recon"].item(), kl + parts["kl"].item()
    n = len(test)
    return (recon + kl) / n, recon / n, kl / n


def checkpoint(model, opt, rng, config, epoch, history):
    """numpyvae's Checkpoint of the Torch run: the state_dict under its own names, Adam's moments
    flattened in the same order, the shuffling Generator's state."""
    params = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    state = [opt.state[p] for p in model.parameters()]
    moments = [np.concatenate([s[k].detach().cpu().numpy().ravel() for s in state])
               for k in ("exp_avg", "exp_avg_sq")]
    steps = int(state[0]["step"])
    return ckpt_io.Checkpoint(params=params, config=config, adam_m=moments[0],
                              adam_v=moments[1], adam_t=steps,
                              rng_state=rng.bit_generator.state, epoch=epoch, history=history)


def train(args):
    try:
        device = pick_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device {args.device}: {e}") from None
    out = Path(args.out) if args.out else None
    made, lock = [], None
    try:
        if out is not None:
            made = folders_to_make(out)
            out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out)
            lock.acquire()
            refuse_taken(out, resumable=False)
        return _train(args, device, out)
    finally:
        if lock is not None:
            lock.release()
        remove_if_empty(made)


def _train(args, device, out):
    train_x, _ = data.load("mnist", "train", args.data_dir)
    test_x, _ = data.load("mnist", "test", args.data_dir)
    if args.limit:
        train_x, test_x = train_x[:args.limit], test_x[:args.limit]
    torch.manual_seed(args.seed)
    model = build(784, args.hidden_dim, args.latent_dim, device=device, activation=args.activation)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    flat = train_x.reshape(len(train_x), -1)
    B = min(args.batch_size, len(flat))
    buf = np.empty((B, 784), np.float32)
    test_flat = test_x.reshape(len(test_x), -1)                       # (n, 784) uint8
    test = torch.as_tensor(data.batch_into(test_flat, np.arange(len(test_flat)), args.binarize,
                                           rng, np.empty(test_flat.shape, np.float32)),
                           device=device)
    config = dict(asdict(Config(epochs=args.epochs, batch_size=args.batch_size,
                                hidden_dim=args.hidden_dim, latent_dim=args.latent_dim,
                                lr=args.lr, seed=args.seed, binarize=args.binarize,
                                limit=args.limit, activation=args.activation,
                                data_dir=args.data_dir)),
                  trained_by=f"reference.train, torch {torch.__version__} on {device}")
    history = {c: [] for c in ckpt_io.HISTORY_COLUMNS}
    print(f"reference: torch {torch.__version__} on {device}, {args.epochs} epoch"
          f"{'s' * (args.epochs != 1)}" + (f" -> {out}" if out else ""))
    for epoch in range(args.epochs):
        order = data.epoch_order(len(flat), rng)
        t0, total = time.perf_counter(), 0.0
        for s in range(data.num_batches(len(flat), B)):
            x = torch.as_tensor(data.batch_into(flat, order[s * B:(s + 1) * B], args.binarize,
                                                rng, buf), device=device)
            loss, _ = neg_elbo(model, x, torch.randn(len(x), args.latent_dim, device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        seconds = time.perf_counter() - t0
        test_loss, recon, kl = test_neg_elbo(model, test, args.latent_dim, device)
        row = dict(epoch=epoch + 1, train_neg_elbo=total / len(flat), test_neg_elbo=test_loss,
                   test_recon=recon, test_kl=kl, epoch_seconds=seconds,
                   holdout_neg_elbo=float("nan"))
        for c in ckpt_io.HISTORY_COLUMNS:
            history[c].append(float(row[c]))
        if out is not None:
            ckpt_io.save(out / "checkpoint.npz",
                         checkpoint(model, opt, rng, config, epoch + 1, history))
            write_config(out, config)
            write_metrics(out, history, COLUMNS, args.binarize)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train −ELBO {row['train_neg_elbo']:8.3f}  "
              f"test −ELBO {test_loss:8.3f} (recon {recon:.3f} + KL {kl:.3f}) nats/image "
              f"[{args.binarize}]  {seconds:.2f} s", flush=True)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
