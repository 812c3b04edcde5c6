"""`python -m numpyvae.train`: the source notebook's training run, done right.

With no flags: MNIST, threshold binarization, batch 128, hidden 200, latent 20, LeakyReLU(0.2),
torch.nn.Linear's initialisation, Adam lr 1e-3, 20 epochs, seed 0. Reports −ELBO in nats per
image (the notebook printed the batch sum times the batch size). `--preset burda2015` sets up
the VAE of Burda, Grosse & Salakhutdinov (2015), Table 1 (see PRESETS). Writes into --out
(default runs/<timestamp>): config.json, metrics.csv, checkpoint.npz (every epoch, atomically)
and the pictures of numpyvae/plots.py.

The run folder as a transaction: one command at a time holds its lock (numpyvae.runlock); the
run's files appear with its first checkpoint, so a run stopped before it (Ctrl-C or a kill
during start-up, a non-finite first epoch, a full disk) leaves nothing, and the same command
starts it again; temp files of a killed writer are removed when the next command takes the
folder. A request the machine cannot hold is refused before anything is allocated.
SIGINT, SIGTERM and SIGHUP all stop a run the same way: a checkpoint, then exit 128 + signal.

Determinism: the model is initialised from default_rng(seed); shuffling, ε and dynamic
binarization all come from one training Generator whose state is checkpointed, so a run
resumed from any checkpoint (an epoch's end, or mid-epoch after Ctrl-C) continues exactly as
the uninterrupted run would have.
"""
import argparse
import csv
import io
import json
import logging
import signal
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import backend as backends
from . import checkpoint as ckpt_io
from . import data
from .adam import Adam
from .cli import UsageError
from .evaluate import HOLDOUT_STREAMS, evaluate_test
from .memory import check_memory, training_bytes
from .config import FIXED_ON_RESUME, PRESETS, SETTINGS, Config, add_flags
from .model import VAE
from .runlock import RunLock, RunLocked

EXIT_INTERRUPTED = 130
EXIT_NONFINITE = 3


# The files a run writes into its folder; a new run never overwrites any of them.
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.csv", "elbo.png", "reconstructions.png",
             "samples.png", "latent.png")


def train_generator(seed):
    """The one Generator behind shuffling, ε and dynamic binarization."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1])))


def learning_rate(cfg, epoch):
    """Adam's learning rate in epoch `epoch` (0-based).

    burda (Burda et al. 2015, §5): stage i = 0, 1, …, 7 lasts 3^i epochs at lr·10^(−i/7)
    (3,280 epochs in all; later epochs stay at stage 7). Their code rounds the rate to one
    decimal of 1e-4 units; this is the paper's formula."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3 ** stage
    return cfg.lr * 10 ** (-stage / 7)


def data_mean_bias(images_flat, mode, dtype):
    """The decoder's output bias that makes θ the mean training pixel: logit(clip(p̄, 0.001,
    0.999)) (Burda et al.'s code). p̄ is the mean of what the model is fed: the thresholded
    pixel for "threshold", the intensity x/255 (a dynamic draw's expectation) otherwise.
    images_flat: uint8 (N, D) -> (D,)."""
    if mode == "threshold":
        p = (images_flat >= 128).mean(axis=0)                          # (D,)
    else:
        p = images_flat.mean(axis=0, dtype=np.float64) / 255           # (D,)
    p = np.clip(p, 0.001, 0.999)
    return np.log(p / (1 - p)).astype(dtype)


# ---------------------------------------------------------------------------- arguments

def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m numpyvae.train",
        description="Train the notebook's VAE on MNIST; −ELBO reported in nats per image.")
    # Defaults are None so that --resume can tell which flags were given.
    add_flags(p, [s.name for s in SETTINGS if s.help is not None])
    p.add_argument("--out", default=None, help="run folder (default runs/<timestamp>)")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="burda2015: the VAE of Burda et al. (2015), Table 1 (batch 20, latent 50, "
                        "tanh, Glorot, dynamic binarization, 3,280 epochs, …); flags given "
                        "beside it override it")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint up to --epochs")
    return p


def resolve_config(args):
    """The run's Config from the flags, or, with --resume, from the checkpoint in --out."""
    given = {f.name: getattr(args, f.name) for f in fields(Config)
             if getattr(args, f.name, None) is not None}
    if args.preset and args.resume:
        raise UsageError(f"--preset {args.preset} starts a run; --resume continues one with the "
                         "settings it started with: drop --preset")
    if args.preset:
        given = {**PRESETS[args.preset], **given}
    if not args.resume:
        return Config(**given), None
    if args.out is None:
        raise UsageError("--resume needs --out RUN_DIR, the folder of the run to continue")
    path = Path(args.out) / "checkpoint.npz"
    if not path.is_file():
        raise UsageError(no_checkpoint(path))
    ck = ckpt_io.load(path)          # every setting checked there: present, of its type
    saved = Config(**{f.name: ck.config[f.name] for f in fields(Config)})
    for name in FIXED_ON_RESUME:
        if name in given and given[name] != getattr(saved, name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {given[name]} differs from the run's {getattr(saved, name)} "
                             f"({path}); a resumed run keeps its hyper-parameters")
    for name in set(given) - set(FIXED_ON_RESUME):               # --epochs, --data-dir
        setattr(saved, name, given[name])
    return saved, ck


def no_checkpoint(path):
    return (f"--resume: no checkpoint at {path}. A run that stopped before its first checkpoint "
            "left nothing to continue: start it again with the same command, without --resume")


# ---------------------------------------------------------------------------- training

class Stopped(KeyboardInterrupt):
    """A signal before training began (start-up: data, model, kernels): nothing to save."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) stop a run the same way.

    During start-up (`starting`, until the training loop begins) a signal raises Stopped: there
    is nothing to save yet. From then on it sets a flag: the loop finishes its step, writes the
    checkpoint, then exits; during the final pictures, the picture being drawn is finished and
    the rest are left for `--resume` to redraw.

    ignore_after: once stopping, ignore further signals for the rest of the process instead
    of restoring the old handlers (for the CLI: at interpreter shutdown CPython resets Python
    handlers to the default action, so a second Ctrl-C then would kill the exiting process;
    SIG_IGN is left alone).
    """
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, ignore_after=False):
        self.signum = None
        self.ignore_after = ignore_after
        self.starting = True

    def __call__(self, signum, frame):
        first = self.signum is None
        self.signum = self.signum or signum
        if first and self.starting:
            raise Stopped(signum)
        try:                             # after SIGHUP the terminal may be gone
            tqdm.write(f"\n{signal.Signals(signum).name}: finishing this step and writing a "
                       "checkpoint…" if first else "already stopping; the checkpoint is being "
                       "written", file=sys.stderr)
        except (OSError, ValueError):
            pass

    def __enter__(self):
        self._old = {s: signal.signal(s, self) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_IGN if self.ignore_after and self.signum else h)



def write_metrics(path, history, mode, holdout=0):
    """metrics.csv: one row per epoch; the held-out −ELBO column only when a run holds out."""
    columns = [c for c in ckpt_io.HISTORY_COLUMNS if holdout or c != "holdout_neg_elbo"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns + ["binarize"])
    for i in range(len(history["epoch"])):
        row = [int(history["epoch"][i])] + [repr(float(history[c][i])) for c in columns[1:]]
        w.writerow(row + [mode])
    ckpt_io.atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


class NonFinite(Exception):
    pass


def run(cfg, out, resume=None, log=print, stop=None):
    """Train according to cfg into the folder `out`; returns the final history dict.

    resume: a checkpoint.Checkpoint to continue from, or None for a fresh run.
    stop: the StopRequest installed by the caller (main), or None to install one here.
    Returns (history, signal number or None when not stopped by a signal); raises NonFinite
    when a loss or gradient stops being finite. A resumed run with no epochs left to train
    only redraws the pictures.

    The run's files appear with its first checkpoint: config.json and metrics.csv are written
    after each checkpoint (and, resuming, at the start), so a run stopped before its first
    checkpoint leaves nothing behind and the same command starts it again.
    """
    if stop is None:
        with StopRequest() as stop:
            return run(cfg, out, resume, log, stop)
    train_x, _ = data.load(cfg.dataset, "train", cfg.data_dir)
    test_x, test_y = data.load(cfg.dataset, "test", cfg.data_dir)
    if cfg.limit:
        train_x, test_x, test_y = train_x[:cfg.limit], test_x[:cfg.limit], test_y[:cfg.limit]
    if cfg.holdout >= len(train_x):
        raise UsageError(f"--holdout {cfg.holdout} leaves no training images (the training split "
                         f"has {len(train_x)}); hold out fewer")
    train_x, held_x = data.hold_out(train_x, cfg.holdout)
    train_flat = train_x.reshape(len(train_x), -1)                  # (N, 784) uint8
    cfg.x_dim = train_flat.shape[1]
    N, B, L = len(train_flat), cfg.batch_size, cfg.samples

    model = VAE(cfg.x_dim, cfg.hidden_dim, cfg.latent_dim, dtype=cfg.dtype, seed=cfg.seed,
                backend=cfg.backend, activation=cfg.activation, init=cfg.init)
    if cfg.output_bias == "data-mean":
        model.params["Decoder.FC_output.bias"][...] = data_mean_bias(train_flat, cfg.binarize,
                                                                     model.dtype)
    opt = Adam(model.num_params, cfg.dtype, lr=cfg.lr, eps=cfg.adam_eps, backend=cfg.backend)
    rng = train_generator(cfg.seed)
    history = {c: [] for c in ckpt_io.HISTORY_COLUMNS}
    start_epoch, start_step, order, running, elapsed = 0, 0, None, 0.0, 0.0
    if resume is not None:
        model.load_params(resume.params)
        opt.m[...], opt.v[...], opt.t = resume.adam_m, resume.adam_v, resume.adam_t
        rng.bit_generator.state = resume.rng_state
        history = {c: list(v) for c, v in resume.history.items()}
        start_epoch, start_step = resume.epoch, resume.step_in_epoch
        if start_step:
            order, running, elapsed = resume.order, resume.running_loss, resume.epoch_elapsed
    # never a smaller --epochs than the run has (a resume with nothing left to train)
    config = dict(asdict(cfg), epochs=max(cfg.epochs, start_epoch), num_params=model.num_params)

    def record():
        ckpt_io.atomic_write(out / "config.json",
                             lambda f: f.write(json.dumps(config, indent=2).encode() + b"\n"))
        write_metrics(out / "metrics.csv", history, cfg.binarize, cfg.holdout)

    take_batch = backends.batch_taker(cfg.backend, train_flat, cfg.batch_size, cfg.binarize, rng,
                                      model.dtype)
    backends.warm_up(model, cfg.samples, cfg.binarize, train_flat)
    eps_bufs = {}                                       # batch size -> (L, b, Z) buffer
    steps = data.num_batches(N, B)
    ckpt_path = out / "checkpoint.npz"
    if resume is not None:
        check_position(resume, N, steps, ckpt_path)
        record()                          # restores config.json and metrics.csv if lost

    def snapshot(epoch, step, order, running, elapsed):
        # A non-finite gradient turns its parameter NaN (model.train_step); the step after
        # would stop on its loss, but a checkpoint may come first: it never stores one.
        if not np.isfinite(model.flat).all():
            where = (f"at the end of epoch {epoch}" if step == 0 else
                     f"after step {step} of {steps} of epoch {epoch + 1}")
            raise NonFinite(f"non-finite parameters {where} (a gradient was not finite); "
                            f"training stopped")
        return ckpt_io.Checkpoint(
            params={k: v.copy() for k, v in model.params.items()}, config=config,
            adam_m=opt.m.copy(), adam_v=opt.v.copy(), adam_t=opt.t,
            rng_state=rng.bit_generator.state, epoch=epoch, step_in_epoch=step,
            order=order if step else np.zeros(0, np.int64), running_loss=running,
            epoch_elapsed=elapsed, history=history)

    from . import plots                   # imported before the loop: no signal lands in it

    stop.starting = False                 # from here a signal is a checkpoint, not an exception
    if stop.signum is not None:           # one arrived between the last check and here
        return history, stop.signum
    for epoch in range(start_epoch, cfg.epochs):
        if order is None or start_step == 0:
            order, running, elapsed, start_step = data.epoch_order(N, rng), 0.0, 0.0, 0
        opt.lr = learning_rate(cfg, epoch)
        bar = tqdm(total=steps, initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True, mininterval=0.5)
        t0 = time.perf_counter()
        for step in range(start_step, steps):
            idx = order[step * B:(step + 1) * B]
            b = len(idx)
            x = take_batch(idx)                                  # (b, D)
            if b not in eps_bufs:
                eps_bufs[b] = np.empty((L, b, cfg.latent_dim), model.dtype)
            eps = rng.standard_normal(dtype=model.dtype, out=eps_bufs[b])
            try:
                loss = model.train_step(x, eps if L > 1 else eps[0], opt)
            except FloatingPointError as err:        # the model is spoilt; the checkpoint is not
                bar.close()
                raise NonFinite(f"{err} at epoch {epoch + 1}, step {step + 1} of {steps}; "
                                f"training stopped") from None
            running += loss
            bar.update()
            if step % 20 == 0 or step == steps - 1:
                bar.set_postfix_str(f"−ELBO/image {running / min(N, (step + 1) * B):.2f}",
                                    refresh=False)
            if stop.signum is not None and step < steps - 1:
                elapsed += time.perf_counter() - t0
                bar.close()
                ckpt_io.save(ckpt_path, snapshot(epoch, step + 1, order, running, elapsed))
                record()
                return history, stop.signum
        elapsed += time.perf_counter() - t0
        bar.close()
        test, recon, kl = evaluate_test(model, test_x, cfg.seed, cfg.binarize)
        held = (evaluate_test(model, held_x, cfg.seed, cfg.binarize,
                              streams=HOLDOUT_STREAMS)[0] if cfg.holdout else float("nan"))
        row = dict(epoch=epoch + 1, train_neg_elbo=running / N, test_neg_elbo=test,
                   test_recon=recon, test_kl=kl, epoch_seconds=elapsed,
                   holdout_neg_elbo=held)
        for c in ckpt_io.HISTORY_COLUMNS:
            history[c].append(float(row[c]))
        ckpt_io.save(ckpt_path, snapshot(epoch + 1, 0, None, 0.0, 0.0))
        record()
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  train −ELBO {row['train_neg_elbo']:8.3f}  "
            f"test −ELBO {test:8.3f} (recon {recon:.3f} + KL {kl:.3f}) nats/image "
            + (f"held-out {held:8.3f} " if cfg.holdout else "")
            + f"[{cfg.binarize}]  {elapsed:.2f} s")
        order, start_step = None, 0
        if stop.signum is not None:
            return history, stop.signum
    plots.draw_run(out, model, history, test_x, test_y, cfg,
                   stop=lambda: stop.signum is not None)
    return history, stop.signum


def check_position(ck, n, steps, path):
    """Refuse a checkpoint whose place in training does not fit this dataset and batch size."""
    if ck.step_in_epoch:
        if ck.step_in_epoch >= steps:
            raise ckpt_io.CheckpointError(f"{path}: stopped at step {ck.step_in_epoch} of an "
                                          f"epoch that has {steps}")
        if len(ck.order) != n or not np.array_equal(np.sort(ck.order), np.arange(n)):
            raise ckpt_io.CheckpointError(f"{path}: its epoch order is not a permutation of "
                                          f"the {n} training images")
    if ck.adam_t != ck.epoch * steps + ck.step_in_epoch:
        raise ckpt_io.CheckpointError(f"{path}: Adam has taken {ck.adam_t} steps, but epoch "
                                      f"{ck.epoch} step {ck.step_in_epoch} at {steps} steps per "
                                      f"epoch means {ck.epoch * steps + ck.step_in_epoch}")


def _folders_to_make(folder):
    """The folders that `folder.mkdir(parents=True)` will create, deepest first."""
    made = []
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


def _remove_if_empty(folders):
    """Folders this command made and then wrote nothing into (the data could not be loaded,
    Ctrl-C during a download) are removed again, deepest first, so a failed start leaves no
    trace; a folder holding anything stays."""
    for folder in folders:
        try:
            folder.rmdir()               # only ever succeeds on an empty folder
        except OSError:
            return


def memory_check(cfg):
    """Refuse, before anything is loaded or allocated, a run this machine cannot hold."""
    limit = min(cfg.limit or ckpt_io.MAX_TRAIN_IMAGES, ckpt_io.MAX_TRAIN_IMAGES)
    n_train, n_test = max(limit - cfg.holdout, 1), min(cfg.limit or 10_000, 10_000)
    need = training_bytes(n_train, n_test, cfg.x_dim, cfg.hidden_dim, cfg.latent_dim,
                          cfg.batch_size, cfg.samples, cfg.dtype)
    check_memory(need, f"this run (--batch-size {cfg.batch_size}, --samples {cfg.samples}, "
                       f"--hidden-dim {cfg.hidden_dim}, --latent-dim {cfg.latent_dim}, "
                       f"{cfg.dtype})",
                 "use a smaller --batch-size, --samples or --hidden-dim")


def _taken(out):
    taken = [f for f in RUN_FILES if (out / f).exists()]
    if not taken:
        return
    hint = ""
    if "checkpoint.npz" not in taken:
        hint = (" It has no checkpoint.npz: if those are from a run that never reached its first "
                "checkpoint (older numpyvae wrote config.json first), move them away and run "
                "this command again.")
    raise UsageError(f"{out} already holds a run ({', '.join(taken)}); continue it with "
                     f"--resume --out {out}, or choose another --out.{hint}")


def _say(message):
    try:                                 # after SIGHUP the terminal may be gone
        print(message, file=sys.stderr)
    except (OSError, ValueError):
        pass


def main(argv=None, cli=False):
    """The command: parse argv, train, report. Returns the exit status.

    cli=True when this is the whole process (python -m numpyvae.train): then a stopped run
    ignores further signals while it exits.

    The run folder is locked (numpyvae.runlock) from before anything is read or written in it
    until the command ends: a second command on the same folder is refused at once.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")   # data fetch progress
    out, made, lock, stopped = args.out, [], None, None
    try:
        with StopRequest(ignore_after=cli) as stop:
            out = Path(args.out) if args.out else Path("runs") / datetime.now().strftime(
                "%Y-%m-%d_%H-%M-%S")
            if args.resume:
                if args.out is None:
                    raise UsageError("--resume needs --out RUN_DIR, the folder of the run to "
                                     "continue")
                if not (out / "checkpoint.npz").is_file():
                    raise UsageError(no_checkpoint(out / "checkpoint.npz"))
            else:
                resolve_config(args)                             # flag errors before mkdir
                made = _folders_to_make(out)
                out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out)            # assigned first: `finally` releases a half-taken one
            lock.acquire()
            ckpt_io.remove_stale_temp_files(out, RUN_FILES)
            cfg, resume = resolve_config(args)
            if resume is None:
                _taken(out)
            if resume is not None and resume.step_in_epoch and cfg.epochs <= resume.epoch:
                raise UsageError(f"the run in {out} stopped inside epoch {resume.epoch + 1}; "
                                 f"--epochs must be at least {resume.epoch + 1}")
            if resume is not None and resume.epoch >= cfg.epochs and not resume.step_in_epoch:
                print(f"{out}: the run already has {resume.epoch} epochs (--epochs {cfg.epochs}); "
                      "nothing to train, redrawing its pictures")
            memory_check(cfg)
            print(f"numpyvae: {cfg.dataset} [{cfg.binarize}], VAE {cfg.x_dim}-{cfg.hidden_dim}-"
                  f"{cfg.latent_dim} {cfg.activation} ({cfg.init} init), batch {cfg.batch_size}, "
                  f"L={cfg.samples}, Adam lr {cfg.lr} ({cfg.lr_schedule}) ε {cfg.adam_eps}, "
                  f"{cfg.epochs} epochs, seed {cfg.seed}, {cfg.dtype}/{cfg.backend} -> {out}")
            _, stopped = run(cfg, out, resume, stop=stop)
    except (UsageError, data.DataError, ckpt_io.CheckpointError, RunLocked) as e:
        _say(f"error: {e}")
        return 2 if isinstance(e, UsageError) else 1
    except OSError as e:                  # the run folder cannot be made or written
        _say(f"error: cannot write the run into {out}: {e.strerror or e} ({e.filename or out})")
        return 1
    except KeyboardInterrupt as e:        # Stopped: a signal during start-up
        signum = getattr(e, "signum", signal.SIGINT)
        _say(f"interrupted ({signal.Signals(signum).name}) before training began; nothing was "
             "written — run the same command to start again")
        return 128 + signum
    except NonFinite as e:
        kept = out / "checkpoint.npz"
        _say(f"error: {e}. The last good checkpoint is kept"
             + (f": {kept}" if kept.exists() else
                " (none was written yet: the same command starts the run again)"))
        return EXIT_NONFINITE
    finally:
        if lock is not None:
            lock.release()
        _remove_if_empty(made)
    if stopped is not None:
        _say(f"stopped by {signal.Signals(stopped).name}; checkpoint written to "
             f"{out / 'checkpoint.npz'}. Continue with: python -m numpyvae.train --resume "
             f"--out {out}")
        return 128 + stopped                       # the shell's convention: 130 for SIGINT
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(cli=True))
