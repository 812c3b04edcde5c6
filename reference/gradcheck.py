"""`python -m reference.gradcheck`: every gradient of numpyvae against Torch autograd.

numpyvae's loss, intermediates and 14 gradients against PyTorch autograd on the reference
Model, tensor by tensor, for any configuration.

    python -m reference.gradcheck                           # the notebook's network, float64
    python -m reference.gradcheck --activation tanh --init glorot --latent-dim 50 --samples 3
    python -m reference.gradcheck --run results/burda2015-vae   # a trained run, a test batch
    python -m reference.gradcheck --objective iwae --samples 5 --estimator dreg   # the bound

Both sides get the same parameters, x and ε. One line per tensor — the loss, μ, log σ², z, the
logits (with --objective iwae also the weights w̃, and the gradients by --estimator, Torch's
with `detach` where the estimator says: reference.model.neg_iwae) and every gradient — with its max |Δ|, its relative error (max |Δ| / max |ref|, the
tests' measure) and OK or FAIL against the tolerance of reference/compare.py; the exit status
is 1 when any tensor fails. x is a random binary batch, or with --run the first --batch-size
images of the run's test split, binarized as its evaluation does. In float32, images with a
LeakyReLU pre-activation within rounding of 0 are left out and counted: there the branch is
the BLAS kernel's choice, not the code's (reference/compare.py says why). A network or batch
this machine cannot hold is refused before anything is allocated; torch is loaded inside the
command's work (numpyvae.run.cli.run_command), so a Ctrl-C meanwhile is one line.
"""
import sys

from numpyvae.run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np

    import numpyvae as nv
    from numpyvae import data
    from numpyvae.errors import UsageError
    from numpyvae.oracle import iwae
    from numpyvae.run import arithmetic
    from numpyvae.run.checkpoint import load_model
    from numpyvae.run.cli import argument_parser, flag_type, int_in, one_line, run_command
    from numpyvae.run.config import BY_NAME, DATA_DIR_FLAG, add_flags
    from numpyvae.run.evaluation import TEST_STREAMS, data_folder, eval_inputs, training_now
    from numpyvae.run.memory import check_memory, training_bytes
    from reference.compare import TOLERANCE, away_from_kinks, rel_err

DTYPES = ("float32", "float64")
NETWORK = ("hidden_dim", "latent_dim", "activation", "init")      # a run has its own
MAX_BATCH = 10_000               # MNIST's test split, which --run takes its batch from


def build_parser():
    p = argument_parser("python -m reference.gradcheck", __doc__)
    add_flags(p, ("hidden_dim", "latent_dim", "activation", "init", "samples", "seed",
                  "backend", "objective", "estimator"), defaults=True)
    p.add_argument("--dtype", choices=DTYPES, default="float64",
                   help="the arithmetic of both sides (default float64)")
    p.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=32,
                   help="images in the batch (default 32)")
    p.add_argument("--run", default=None,      # "" would read ./checkpoint.npz: refused
                   type=flag_type(str, bool, "a run folder or a checkpoint file"),
                   help="check this run folder's (or checkpoint's) configuration and weights on "
                        "its test images, instead of a freshly initialised network")
    p.add_argument("--data-dir", type=DATA_DIR_FLAG, default=None,
                   help="with --run: where its dataset is (default: the run's own)")
    return p


def setup(args):
    """(model, x, eps, what): the network, the batch and the noise both sides get."""
    rng = np.random.default_rng(args.seed)
    if args.run is None:
        memory_check(args, 784, args.hidden_dim, args.latent_dim)
        model = nv.VAE(784, args.hidden_dim, args.latent_dim, dtype=args.dtype, seed=args.seed,
                       backend=args.backend, activation=args.activation, init=args.init)
        x = (rng.random((args.batch_size, 784)) < 0.2).astype(args.dtype)   # (B, D) binary
        what = (f"784-{args.hidden_dim}-{args.latent_dim} {args.activation} ({args.init} init, "
                f"seed {args.seed})")
    else:
        given = [f"--{n.replace('_', '-')}" for n in NETWORK
                 if getattr(args, n) != BY_NAME[n].default]
        if given:
            raise UsageError(f"--run checks the run's own network; {' '.join(given)} would "
                             f"describe another: drop {'it' if len(given) == 1 else 'them'}")
        note = training_now(args.run)             # a run still training: its latest epoch's
        if note:
            print(note)
        trained, cfg = load_model(args.run)
        memory_check(args, cfg["x_dim"], cfg["hidden_dim"], cfg["latent_dim"], args.run)
        model = nv.VAE(cfg["x_dim"], cfg["hidden_dim"], cfg["latent_dim"], dtype=args.dtype,
                       backend=args.backend, activation=cfg["activation"])
        model.load_params(trained.params)
        images, _ = data.load(cfg["dataset"], "test", data_folder(args.data_dir, cfg))
        x = eval_inputs(images[:args.batch_size], cfg["seed"], cfg["binarize"], model.dtype,
                        TEST_STREAMS[1])                                    # (B, D)
        what = (f"{one_line(args.run)}: {cfg['x_dim']}-{cfg['hidden_dim']}-{cfg['latent_dim']} "
                f"{cfg['activation']}, its first {len(x)} {cfg['dataset']} test images")
    L, B, Z = args.samples, len(x), model.latent_dim
    eps = rng.standard_normal((L, B, Z) if L > 1 else (B, Z)).astype(args.dtype)
    return model, x, eps, what


def memory_check(args, x_dim, hidden_dim, latent_dim, run=None):
    """Refuse a network and batch this machine cannot hold, before the batch, the noise or the
    second copy of the network is made — a fresh one's, or with --run the run's own: twice
    numpyvae's upper estimate of a training step (both sides hold the network, the batch and a
    step's activations and gradients)."""
    need = 2 * training_bytes(args.batch_size, 0, x_dim, hidden_dim, latent_dim,
                              args.batch_size, args.samples, args.dtype)
    network = (f"--run {run}'s {x_dim}-{hidden_dim}-{latent_dim}" if run is not None else
               f"--hidden-dim {hidden_dim}, --latent-dim {latent_dim}")
    check_memory(need, f"this check (--batch-size {args.batch_size}, --samples {args.samples}, "
                       f"{network}, {args.dtype})",
                 "use a smaller --batch-size or --samples" + ("" if run is not None else
                                                              " or --hidden-dim"))


def compare(model, x, eps, objective="elbo", estimator=None):
    """[(tensor name, ours, Torch's)]: the loss, the intermediates, the 14 gradients."""
    import torch                        # after setup: a request refused there never loads it
    from reference.model import from_params, neg_elbo       # torch with it
    tmodel = from_params(model.params, dtype=getattr(torch, model.dtype.name),
                         activation=model.activation)
    if objective == "iwae":
        return compare_iwae(model, tmodel, x, eps, estimator)
    _, cache = model.forward(x, eps)
    loss, grads = model.loss_and_grads(x, eps)
    t_loss, parts = neg_elbo(tmodel, torch.as_tensor(x), torch.as_tensor(eps))
    t_loss.backward()
    rows = [("loss", np.float64(loss), np.float64(t_loss.item())),
            ("mu", cache["mu"], parts["mean"].detach().numpy()),
            ("logvar", cache["logvar"], parts["log_var"].detach().numpy()),
            ("z", cache["z"].reshape(parts["z"].shape), parts["z"].detach().numpy()),
            ("logits", cache["logits"], parts["logits"].detach().reshape(-1, x.shape[1]).numpy())]
    return rows + [(k, grads[k], p.grad.numpy()) for k, p in tmodel.named_parameters()]


def compare_iwae(model, tmodel, x, eps, estimator):
    """compare's rows for the bound: the loss −Σ L_K, μ, log σ², z, the logits, the weights w̃
    (K, B), then the 14 gradients by `estimator`."""
    import torch                        # loaded by compare already
    from reference.model import iwae_log_weights, neg_iwae  # torch with it
    eps3 = eps.reshape(-1, *x.shape[:1], model.latent_dim)                    # (K, B, Z)
    _, cache = iwae.forward(model.params, model.as_input(x), eps3, model.activation)
    loss, grads = model.loss_and_grads(x, eps3, objective="iwae", estimator=estimator)
    tx, te = torch.as_tensor(x), torch.as_tensor(eps3)
    t_loss = neg_iwae(tmodel, tx, te, estimator)
    with torch.no_grad():
        mean, log_var = tmodel.Encoder(tx)
        z = tmodel.reparameterization(mean, torch.exp(0.5 * log_var), te)
        logits = tmodel.Decoder.logits(z)
        weights = torch.softmax(iwae_log_weights(tmodel, tx, z, mean, log_var), 0)
    rows = [("loss", np.float64(loss), np.float64(t_loss.item())),
            ("mu", cache["mu"], mean.numpy()), ("logvar", cache["logvar"], log_var.numpy()),
            ("z", cache["z"], z.numpy()), ("logits", cache["logits"],
                                           logits.reshape(-1, x.shape[1]).numpy()),
            ("weights", cache["weights"], weights.numpy())]
    return rows + [(k, grads[k], p.grad.numpy()) for k, p in tmodel.named_parameters()]


def check(args):
    if args.objective == "elbo" and args.estimator is not None:
        raise UsageError(f"--estimator {args.estimator} is the gradient estimator of the "
                         f"importance-weighted bound: add --objective iwae, or drop it")
    estimator = args.estimator or ("standard" if args.objective == "iwae" else None)
    model, x, eps, what = setup(args)
    import torch                        # after setup: a request refused there never loads it
    dropped = 0
    if model.dtype == np.float32 and model.activation == "leaky_relu":
        x, eps, dropped = away_from_kinks(model.params, x, eps)
        if not len(x):
            raise UsageError(f"every one of the {dropped} images has a pre-activation at a kink "
                             f"in float32; use --dtype float64")
    tol = TOLERANCE[model.dtype.name]
    objective = (f"L={args.samples}" if args.objective == "elbo" else
                 f"iwae K={args.samples} ({estimator})")
    print(f"gradcheck: {what}; {model.dtype.name}, batch {len(x)}, {objective}, "
          f"numpyvae ({model.backend}) vs torch {torch.__version__} autograd, tolerance {tol:g}")
    print(arithmetic.describe({**arithmetic.record(), **arithmetic.torch_record(torch, "cpu")}))
    if dropped:
        print(f"  {dropped} image(s) left out: a LeakyReLU pre-activation within rounding of 0")
    print(f"  {'tensor':<26}{'max |Δ|':>12}{'rel err':>12}")
    failed = []
    rows = compare(model, x, eps, args.objective, estimator)
    for name, ours, ref in rows:
        err = rel_err(ours, ref)
        diff = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))))
        ok = err <= tol
        failed += [] if ok else [name]
        print(f"  {name:<26}{diff:12.3e}{err:12.3e}  {'OK' if ok else 'FAIL'}")
    if failed:
        print(f"FAIL: {len(failed)} tensor(s) differ from Torch autograd: {', '.join(failed)}")
        return 1
    print(f"OK: the loss, {len(rows) - 15} intermediates and 14 gradients agree with Torch "
          f"autograd")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command(lambda: check(args))


if __name__ == "__main__":
    sys.exit(main())
