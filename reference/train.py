"""`python -m reference.train`: the notebook's training loop in PyTorch, numpyvae's peer.

Trains the reference Model the way `python -m numpyvae.train` trains numpyvae's — same data,
binarization, batch size, shuffling per epoch, torch.optim.Adam with the same learning rate,
epochs and seed — but with PyTorch's own initialisation and noise (torch.manual_seed(seed)),
and prints the test −ELBO per image after each epoch. With --out it writes a run folder as
numpyvae's does: metrics.csv with the same columns (so `diff` compares the two runs),
config.json, and checkpoint.npz in numpyvae's format (the Model's state_dict names are
numpyvae's), which `python -m numpyvae.evaluate` and `numpyvae.sample` read.

The run folder is numpyvae's transaction (numpyvae/run/folder.py, numpyvae/run/lock.py): locked
for the whole command, its files written with each epoch's checkpoint. Ctrl-C, SIGTERM or
SIGHUP stop it at once (numpyvae.run.signals.StopRequest). The reference has no --resume: a run
stopped (or failing to write) after its first epoch keeps the epochs it finished, a whole run
folder that evaluate and sample read; one stopped before leaves the folder as it found it, so
the same command starts it again. A seed torch cannot take, a run the
machine cannot hold and an --out that cannot be a run folder are refused before the data are
loaded or the model is made.
"""
import errno
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from numpyvae.run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np

    from numpyvae import data
    from numpyvae.datasets.fetch import MAX_TEST_IMAGES, MAX_TRAIN_IMAGES
    from numpyvae.errors import UsageError
    from numpyvae.run import arithmetic
    from numpyvae.run import checkpoint as ckpt_io
    from numpyvae.run.cli import argument_parser, int_in, one_line, run_command, say
    from numpyvae.run.config import Config, add_flags, training_column, training_loss
    from numpyvae.run.folder import (folders_to_make, refuse_taken, remove_if_empty,
                                     remove_stale_temp_files, write_config, write_metrics)
    from numpyvae.run.lock import TRAINING, RunLock
    from numpyvae.run.memory import check_memory, gigabytes, training_bytes
    from numpyvae.run.signals import StopRequest

COLUMNS = [c for c in ckpt_io.HISTORY_COLUMNS if c != "holdout_neg_elbo"]   # numpyvae's
WRITES = ("checkpoint.npz", "config.json", "metrics.csv")      # what a reference run writes


def build_parser():
    p = argument_parser("python -m reference.train", __doc__)
    # numpyvae.train's flags of the same name: same types, defaults and help
    add_flags(p, ("epochs", "batch_size", "hidden_dim", "latent_dim", "lr", "seed", "binarize",
                  "activation", "data_dir", "samples", "objective", "estimator"), defaults=True)
    p.add_argument("--limit", type=int_in(0, MAX_TRAIN_IMAGES), default=0,
                   help="use only the first N training and test images (default 0: all)")
    p.add_argument("--out", default=None,
                   help="write a run folder here, as numpyvae.train does (default: none, "
                        "print only)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: CUDA → MPS → CPU)")
    return p


# ---------------------------------------------------------------------------- the request

def check_request(args, device):
    """Refuse, before the data or the model, a run this machine (or the GPU) cannot hold:
    numpyvae's upper estimate of its own run in float32 — the Torch run holds the same tensors
    (parameters, their gradients, Adam's two moments, a step's activations, the images).
    (--seed needs no check here: its setting is bounded by what torch.manual_seed takes,
    numpyvae.run.config.MAX_SEED.)"""
    import torch                        # once the request is checked (torch takes seconds)
    n_train = min(args.limit or MAX_TRAIN_IMAGES, MAX_TRAIN_IMAGES)
    n_test = min(args.limit or MAX_TEST_IMAGES, MAX_TEST_IMAGES)
    if args.objective == "elbo" and args.estimator is not None:
        raise UsageError(f"--estimator {args.estimator} is the gradient estimator of the "
                         f"importance-weighted bound: add --objective iwae, or drop it")
    need = training_bytes(n_train, n_test, 784, args.hidden_dim, args.latent_dim,
                          args.batch_size, args.samples, "float32")
    what = (f"this run (--batch-size {args.batch_size}, --samples {args.samples}, "
            f"--hidden-dim {args.hidden_dim}, --latent-dim {args.latent_dim})")
    advice = "use a smaller --batch-size, --samples, --hidden-dim or --latent-dim"
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        if need > free:
            raise UsageError(f"{what} needs ≈ {gigabytes(need)} of memory, {device} has "
                             f"{gigabytes(free)} free; {advice}")
    else:                                      # the CPU, or MPS's memory shared with it
        check_memory(need, what, advice)


def check_out(out):
    """UsageError unless `out` is, or can be made, a folder: an --out that names a file, or
    lies under one, is refused before anything is loaded."""
    made = folders_to_make(out)
    there = made[-1].parent if made else out                # the deepest path that exists
    if not there.is_dir():
        raise UsageError(f"--out {out}: {there} is not a folder; choose another --out")


# ---------------------------------------------------------------------------- training

def test_neg_elbo(model, test, latent_dim, device):
    """(−ELBO, recon, KL) per image on the binarized test images, one torch.randn ε each."""
    import torch                        # once the request is checked (torch takes seconds)
    from reference.model import neg_elbo                    # torch with it
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


def train(args, cli=False):
    """The command's work; returns its exit status. torch is loaded here, under StopRequest,
    not at import: a signal in the seconds that takes is one line. The run folder is locked
    from before anything is read or written in it until the command ends; the run's files
    are removed unless a first epoch was written whole, and folders made for it are removed
    when empty.
    cli=True when this is the whole process: a stopped run ignores further signals."""
    made, lock, run = [], None, {"wrote": [], "kept": 0, "epoch": 0}
    if args.out == "":                   # as numpyvae.train: never "no folder" by accident
        raise UsageError('--out "": an empty path; name the run folder (or leave --out out to '
                         'print the epochs only)')
    out = Path(args.out) if args.out is not None else None
    try:
        with StopRequest(ignore_after=cli):              # a signal raises Stopped, throughout
            from reference.model import pick_device        # and torch with it
            try:
                device = pick_device(args.device)
            except ValueError as e:
                raise UsageError(f"--device {args.device}: {e}") from None
            check_request(args, device)
            if out is not None:
                check_out(out)
                made = folders_to_make(out)
                out.mkdir(parents=True, exist_ok=True)
                lock = RunLock(out, purpose=TRAINING)   # assigned first: `finally`
                                                        # releases a half-taken one
                lock.acquire()
                remove_stale_temp_files(out, WRITES)     # a killed reference run's
                refuse_taken(out, resumable=False)
            _train(args, device, out, run)
    except KeyboardInterrupt as e:         # Stopped: SIGINT, SIGTERM or SIGHUP
        signum = getattr(e, "signum", signal.SIGINT)
        name = signal.Signals(signum).name
        if not run["epoch"]:
            say(f"interrupted ({name}) before training began; nothing was written — run the "
                "same command to start again")
        elif run["kept"]:
            say(f"interrupted ({name}) in epoch {run['epoch']} of {args.epochs}; the "
                f"{run['kept']} finished epoch{'s are' if run['kept'] != 1 else ' is'} kept in "
                f"{one_line(out)} "
                "(reference.train has no --resume: to train again, choose another --out)")
        else:
            say(f"interrupted ({name}) in epoch {run['epoch']} of {args.epochs}, before its "
                "first checkpoint; nothing was kept — run the same command to start again")
        return 128 + signum                        # the shell's convention: 130 for SIGINT
    finally:
        if not run["kept"]:                        # a first epoch's files half written
            for path in run["wrote"]:
                path.unlink(missing_ok=True)
        if lock is not None:
            lock.release()
        remove_if_empty(made)
    return 0


def _train(args, device, out, run):
    """The training run. run["epoch"]: the epoch in progress (1-based, 0 before the first);
    run["wrote"]: the run's files once the first is written; run["kept"]: the epochs whose
    checkpoint, config and metrics are all written."""
    import torch                        # once the request is checked (torch takes seconds)
    from reference.model import build, neg_elbo, neg_iwae   # torch with it
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
                                data_dir=args.data_dir, samples=args.samples,
                                objective=args.objective,
                                estimator=(args.estimator or "standard"
                                           if args.objective == "iwae" else None),
                                blas_threads=None)),      # torch's threads, not numpyvae's
                  trained_by=f"reference.train, torch {torch.__version__} on {device}")
    arith = arithmetic.torch_record(torch, device)
    config["arithmetic"] = arithmetic.extend(None, arith, 0, 0)
    history = {c: [] for c in ckpt_io.HISTORY_COLUMNS}
    print(f"reference: torch {torch.__version__} on {device}, {args.epochs} epoch"
          f"{'s' * (args.epochs != 1)}" + (f" -> {one_line(out)}" if out else ""))
    print(arithmetic.describe(arith))
    for epoch in range(args.epochs):
        run["epoch"] = epoch + 1
        order = data.epoch_order(len(flat), rng)
        t0, total = time.perf_counter(), 0.0
        for s in range(data.num_batches(len(flat), B)):
            x = torch.as_tensor(data.batch_into(flat, order[s * B:(s + 1) * B], args.binarize,
                                                rng, buf), device=device)
            eps = torch.randn(args.samples, len(x), args.latent_dim, device=device)
            opt.zero_grad()
            if args.objective == "iwae":                 # −L_K, .grad set as the estimator says
                loss = neg_iwae(model, x, eps, config["estimator"])
            else:
                loss, _ = neg_elbo(model, x, eps)
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
            run["wrote"] = [out / f for f in WRITES]     # from the first, all three are ours
            ckpt_io.save(out / "checkpoint.npz",
                         checkpoint(model, opt, rng, config, epoch + 1, history))
            write_config(out, config)
            write_metrics(out, history, COLUMNS, args.binarize,
                          {"train_neg_elbo": training_column(args)})
            run["kept"] = epoch + 1                      # a whole run folder of epoch + 1
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train {training_loss(args)} "
              f"{row['train_neg_elbo']:8.3f}  "
              f"test −ELBO {test_loss:8.3f} (recon {recon:.3f} + KL {kl:.3f}) nats/image "
              f"[{args.binarize}]  {seconds:.2f} s", flush=True)


def main(argv=None, cli=False):
    """The command: parse argv, train. Returns the exit status (numpyvae.run.cli.run_command: 2 for
    a usage error, 1 for bad data, a busy folder or a failed write; a signal 128 + its number).
    cli=True when this is the whole process (python -m reference.train)."""
    args = build_parser().parse_args(argv)
    return run_command(lambda: train(args, cli), os_error=lambda e: os_error(e, args.out))


ADVICE = {errno.EACCES: "this user cannot write there", errno.EPERM: "this user cannot write there",
          errno.EROFS: "a read-only file system", errno.ENOSPC: "the disk is full"}


def os_error(e, out):
    """run_command's line for an OSError: with --out, the run folder it was writing, and what
    to do when the cause is one the user can act on."""
    where = f"{e.strerror or e} ({e.filename})" if e.filename else f"{e.strerror or e}"
    if out is None:
        return where
    advice = ADVICE.get(e.errno)
    return (f"cannot write the run into {out}: {where}"
            + (f"; {advice}: choose another --out" if advice else ""))


if __name__ == "__main__":
    sys.exit(main(cli=True))
