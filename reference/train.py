"""`python -m reference.train`: the notebook's training loop in PyTorch, for comparison.

Trains the reference Model the way `python -m numpyvae.train` trains numpyvae's — same data,
binarization, batch size, shuffling per epoch, torch.optim.Adam with the same learning rate,
epochs and seed — but with PyTorch's own initialisation and noise (torch.manual_seed(seed)),
and prints the test −ELBO per image after each epoch. Its final figure is the bar numpyvae's
default run is held to.
"""
import sys
import time

import numpy as np
import torch

from numpyvae import data
from numpyvae.cli import argument_parser
from numpyvae.config import add_flags
from reference.model import build, neg_elbo, pick_device


def main(argv=None):
    p = argument_parser("python -m reference.train", __doc__)
    # numpyvae.train's flags of the same name: same types, defaults and help
    add_flags(p, ("epochs", "batch_size", "hidden_dim", "latent_dim", "lr", "seed", "binarize",
                  "activation", "data_dir"), defaults=True)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: CUDA → MPS → CPU)")
    args = p.parse_args(argv)
    try:
        device = pick_device(args.device)
    except ValueError as e:
        print(f"error: --device {args.device}: {e}", file=sys.stderr)
        return 2
    try:
        train_x, _ = data.load("mnist", "train", args.data_dir)
        test_x, _ = data.load("mnist", "test", args.data_dir)
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    torch.manual_seed(args.seed)
    model = build(784, args.hidden_dim, args.latent_dim, device=device, activation=args.activation)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    flat = train_x.reshape(len(train_x), -1)
    buf = np.empty((args.batch_size, 784), np.float32)
    test = torch.as_tensor(data.batch_into(test_x.reshape(len(test_x), -1), np.arange(len(test_x)),
                                           args.binarize, rng, np.empty((len(test_x), 784), np.float32)),
                           device=device)
    print(f"reference: torch {torch.__version__} on {device}, {args.epochs} epochs")
    for epoch in range(args.epochs):
        order = data.epoch_order(len(flat), rng)
        t0, total = time.perf_counter(), 0.0
        for s in range(data.num_batches(len(flat), args.batch_size)):
            x = torch.as_tensor(data.batch_into(flat, order[s * args.batch_size:(s + 1) * args.batch_size],
                                                args.binarize, rng, buf), device=device)
            loss, _ = neg_elbo(model, x, torch.randn(len(x), args.latent_dim, device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            test_loss = sum(neg_elbo(model, test[i:i + 1000],
                                     torch.randn(len(test[i:i + 1000]), args.latent_dim, device=device))[0].item()
                            for i in range(0, len(test), 1000)) / len(test)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train −ELBO {total / len(flat):8.3f}  "
              f"test −ELBO {test_loss:8.3f} nats/image [{args.binarize}]  {seconds:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
