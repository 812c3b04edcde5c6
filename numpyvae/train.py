"""`python -m numpyvae.train`: the source notebook's training run, done right.

With no flags: MNIST, threshold binarization, batch 128, hidden 200, latent 20, LeakyReLU(0.2),
torch.nn.Linear's initialisation, Adam lr 1e-3, 20 epochs, seed 0. Reports −ELBO in nats per
image (the notebook printed the batch sum times the batch size). `--preset burda2015` sets up
the VAE of Burda, Grosse & Salakhutdinov (2015), Table 1 (see PRESETS). Writes into --out
(default runs/<timestamp>): config.json, metrics.csv, checkpoint.npz (every epoch, atomically)
and the pictures of numpyvae/run/plots.py.

The run folder is a transaction (numpyvae/run/folder.py): one command at a time holds its lock;
the run's files appear with its first checkpoint, so a run stopped before it (Ctrl-C or a kill
during start-up, a non-finite first epoch, a full disk) leaves nothing, and the same command
starts it again. A request the machine cannot hold is refused before anything is allocated.
SIGINT, SIGTERM and SIGHUP all stop a run the same way: a checkpoint, then exit 128 + signal.

Read top to bottom: the settings (flags, or the checkpoint's on --resume) → the images → the
model, Adam and the training Generator (`Training`) → the loop (`run`: `Training.train_epoch`,
then `Training.end_epoch`'s evaluation and checkpoint) → the pictures; `main` is the command.

Determinism: the model is initialised from default_rng(seed); shuffling, ε and dynamic
binarization all come from one training Generator whose state is checkpointed, so a run
resumed from any checkpoint (an epoch's end, or mid-epoch after Ctrl-C) continues exactly as
the uninterrupted run would have.
"""
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path

from .run.startup import starting

with starting(__name__ == "__main__"):    # a signal while these load: one line, 128 + signal
    import numpy as np
    from tqdm import tqdm

    from . import backend as backends
    from . import data, threads
    from .adam import Adam
    from .datasets.fetch import MAX_TRAIN_IMAGES, data_root
    from .errors import CheckpointError, NonFinite, UsageError
    from .model import VAE
    from .run import arithmetic
    from .run import checkpoint as ckpt_io
    from .run import plots
    from .run.cli import argument_parser, one_line, run_command, say, signal_name
    from .run.config import (BY_NAME, FIXED_ON_RESUME, PRESETS, SETTINGS, Config, add_flags,
                             training_column, training_loss)
    from .run.evaluation import HOLDOUT_STREAMS, data_folder, evaluate_test
    from .run.folder import (RUN_FILES, file_kind, folders_to_make, refuse_taken,
                             remove_if_empty, remove_stale_temp_files, write_config,
                             write_metrics)
    from .run.lock import TRAINING, RunLock
    from .run.memory import check_memory, training_bytes
    from .run.signals import StopRequest, Stopped

EXIT_INTERRUPTED = 130
EXIT_NONFINITE = 3



# ---------------------------------------------------------------------------- settings

def build_parser(prog="python -m numpyvae.train"):
    p = argument_parser(prog,
                        "Train the notebook's VAE on MNIST; −ELBO reported in nats per image.")
    # Defaults are None so that --resume can tell which flags were given.
    add_flags(p, [s.name for s in SETTINGS if s.help is not None])
    p.add_argument("--out", default=None, help="run folder (default runs/<timestamp>)")
    p.add_argument("--preset", choices=tuple(PRESETS),
                   help="burda2015: the VAE of Burda et al. (2015), Table 1 (batch 20, latent 50, "
                        "tanh, Glorot, dynamic binarization, 3,280 epochs, …); burda2015-iwae: "
                        "the same trained on the bound, --objective iwae --samples 5; flags "
                        "given beside it override it")
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
    typed = set(given)                    # the flags given, not the preset's
    if args.preset:
        given = {**PRESETS[args.preset], **given}
    if not args.resume:
        cfg = Config(**given)
        if cfg.blas_threads != threads.AUTO and threads.too_many(cfg.blas_threads):
            raise UsageError(threads.too_many(cfg.blas_threads))
        if cfg.objective == "elbo" and "estimator" not in typed:
            cfg.estimator = None          # --objective elbo beside an iwae preset: none
        if cfg.objective == "elbo" and cfg.estimator is not None:
            raise UsageError(f"--estimator {cfg.estimator} is the gradient estimator of the "
                             f"importance-weighted bound: add --objective iwae, or drop it")
        if cfg.objective == "iwae" and cfg.estimator is None:
            cfg.estimator = "standard"        # recorded as what trains: Burda et al.'s
        if cfg.data_dir is None:          # recorded as the folder it is: evaluate and sample
            cfg.data_dir = str(data_root(None).absolute())    # read it whatever HOME is then
        return cfg, None
    path = resume_path(args)
    ck = ckpt_io.load(path)          # every setting checked there: present, of its type
    if "trained_by" in ck.config:
        raise UsageError(f"--resume --out {args.out}: {path} was trained by "
                         f"{ck.config['trained_by']}, and numpyvae.train continues only its own "
                         f"runs (the reference's noise, Adam and arithmetic are not numpyvae's, "
                         f"so it would not continue that run): evaluate or sample it as it is, "
                         f"or train a new run with another --out")
    saved = Config(**{f.name: ck.config[f.name] for f in fields(Config)})
    if given.get("blas_threads") == threads.AUTO:        # the default: the run's own count
        del given["blas_threads"]
    for name in FIXED_ON_RESUME:
        if name in given and given[name] != getattr(saved, name):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {given[name]} differs from the run's "
                             f"{recorded_as(name, getattr(saved, name))} ({path}); "
                             + ("a resumed run trains with the run's threads, so that it "
                                "continues bit for bit" if name == "blas_threads" else
                                "a resumed run keeps its hyper-parameters"))
    for name in set(given) - set(FIXED_ON_RESUME):               # --epochs, --data-dir
        setattr(saved, name, given[name])
    if "data_dir" not in given:        # the recorded folder only where it holds the data
        saved.data_dir = (data_folder(None, ck.config, ("train", "test"))
                          or str(data_root(None).absolute()))
    return saved, ck


def hand_edits(path, recorded):
    """None when config.json at `path` says what the checkpoint records (or is missing: it is
    written again), else the line saying what differs: a resumed run takes its settings from
    the checkpoint and rewrites config.json from them, so an edit there would vanish unseen."""
    try:
        written = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        if isinstance(e, FileNotFoundError):
            return None
        return (f"{path} is not the JSON numpyvae wrote ({type(e).__name__}); a resumed run takes "
                f"its settings from the checkpoint and writes {path.name} again from them")
    if not isinstance(written, dict):
        return (f"{path} holds a JSON {type(written).__name__}, not the settings numpyvae wrote; "
                f"it is written again from the checkpoint")
    differ = [k for k in written if k not in recorded or written[k] != recorded[k]]
    if not differ:
        return None
    shown = [f"{k} {json.dumps(written[k])[:40]} (the checkpoint's: "
             + (json.dumps(recorded[k])[:40] if k in recorded else "none") + ")"
             for k in differ[:6]]
    changeable = [f"--{n.replace('_', '-')}" for n in differ
                  if n in BY_NAME and not BY_NAME[n].fixed and n != "preset"]
    return (f"{path} was edited: {', '.join(shown)}{' …' * (len(differ) > 6)} — ignored: a "
            f"resumed run keeps the checkpoint's settings and writes {path.name} again from them"
            + (f"; {' and '.join(changeable)} change{'s' * (len(changeable) == 1)} "
               f"{'it' if len(changeable) == 1 else 'them'} on --resume" if changeable else ""))


def recorded_as(name, value):
    """A recorded setting's value in words, for messages."""
    if name == "blas_threads" and value is None:
        return ("threads as the environment makes them (recorded before --blas-threads "
                "existed: OPENBLAS_NUM_THREADS sets them)")
    return value


def resume_path(args):
    """The checkpoint --resume continues: --out's checkpoint.npz, or UsageError."""
    if args.out is None:
        raise UsageError("--resume needs --out RUN_DIR, the folder of the run to continue")
    path = Path(args.out) / "checkpoint.npz"
    if os.path.lexists(path) and not path.is_file():
        raise UsageError(f"--resume: {path} is {file_kind(path)}, not a checkpoint; move it out "
                         f"of the way, then start the run again without --resume")
    if not path.is_file():
        raise UsageError(no_checkpoint(path))
    return path


def no_checkpoint(path):
    return (f"--resume: no checkpoint at {path}. A run that stopped before its first checkpoint "
            "left nothing to continue: start it again with the same command, without --resume")


def memory_check(cfg):
    """Refuse, before anything is loaded or allocated, a run this machine cannot hold."""
    limit = min(cfg.limit or MAX_TRAIN_IMAGES, MAX_TRAIN_IMAGES)
    n_train, n_test = max(limit - cfg.holdout, 1), min(cfg.limit or 10_000, 10_000)
    need = training_bytes(n_train, n_test, cfg.x_dim, cfg.hidden_dim, cfg.latent_dim,
                          cfg.batch_size, cfg.samples, cfg.dtype)
    check_memory(need, f"this run (--batch-size {cfg.batch_size}, --samples {cfg.samples}, "
                       f"--hidden-dim {cfg.hidden_dim}, --latent-dim {cfg.latent_dim}, "
                       f"{cfg.dtype})",
                 "use a smaller --batch-size, --samples or --hidden-dim")


# ---------------------------------------------------------------------------- the BLAS's threads

def blas_threads(cfg, images, log):
    """The count of BLAS threads the run trains with (numpyvae/threads.py): cfg.blas_threads
    when it is one (a resumed run's, or --blas-threads N), else ("auto") the fastest for a
    training step of this run's shape, timed now on a model of its own — the run's model, data
    and Generators are untouched. None: as the environment."""
    def make_step():
        model = VAE(cfg.x_dim, cfg.hidden_dim, cfg.latent_dim, dtype=cfg.dtype, seed=cfg.seed,
                    backend=cfg.backend, activation=cfg.activation, init=cfg.init)
        B = min(cfg.batch_size, len(images.train))
        x = (images.train[:B] >= 128).astype(model.dtype)                      # (B, D)
        eps = np.random.default_rng(0).standard_normal((cfg.samples, B, cfg.latent_dim),
                                                       dtype=model.dtype)        # (L, B, Z)
        grads = model.new_grads()[1]
        step = backends.training_step(model, cfg.objective, cfg.estimator)
        return lambda: step(x, eps, grads)
    n, line = threads.resolve(cfg.blas_threads, make_step)
    if line:
        log(line)
    return n


def warm_up(model, samples, mode, images_flat, objective="elbo", estimator=None):
    """Compile (or load from numba's on-disk cache) the kernels a training step of `model`
    (on `objective`, by `estimator`) uses, before the clock starts, so that epoch_seconds measures training alone. Numba
    specialises on dtypes and layouts, not sizes, so a throwaway one-image model of the same
    kind compiles them all; the real model, its workspaces and every Generator are untouched.
    Nothing to do on the NumPy path."""
    if model.backend != "numba":
        return
    D, Z, L, dtype = model.x_dim, model.latent_dim, samples, model.dtype
    tiny = VAE(D, 1, Z, dtype=dtype, backend="numba", activation=model.activation)
    x = np.zeros((1, D), dtype)                                           # (1, D)
    eps = np.zeros((L, 1, Z) if L > 1 else (1, Z), dtype)
    gflat, grads = tiny.new_grads()
    tiny.loss_and_grads(x, eps, out=grads, objective=objective, estimator=estimator)
    Adam(tiny.num_params, dtype, backend="numba").step(tiny.flat, gflat)
    backends.batch_taker("numba", images_flat, 1, mode, np.random.default_rng(0), dtype)(
        np.zeros(1, np.int64))


# ---------------------------------------------------------------------------- schedule, output bias

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


# ---------------------------------------------------------------------------- images

@dataclass
class Images:
    train: np.ndarray        # (N, D) uint8, the training images less the held-out ones
    held: np.ndarray         # (n_held, 28, 28) uint8, the last --holdout training images
    test: np.ndarray         # (n_test, 28, 28) uint8
    test_labels: np.ndarray  # (n_test,) uint8


def load_images(cfg):
    """The run's images: its dataset's two splits cut to --limit, the last --holdout training
    images held out. Sets cfg.x_dim to the images' pixel count."""
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
    return Images(train_flat, held_x, test_x, test_y)


# ---------------------------------------------------------------------------- training

class Training:
    """One run's model, Adam, training Generator and history, and where it stands: `epoch`
    epochs done, `step` steps of the next one (0 at an epoch's end), that epoch's `order`, loss
    sum `running` and training seconds `elapsed`. New from cfg, or restored from `resume` (a
    checkpoint.Checkpoint) exactly as it was saved."""

    def __init__(self, cfg, out, images, resume=None, arith=None):
        self.cfg, self.out, self.images = cfg, out, images
        self.model = VAE(cfg.x_dim, cfg.hidden_dim, cfg.latent_dim, dtype=cfg.dtype,
                         seed=cfg.seed, backend=cfg.backend, activation=cfg.activation,
                         init=cfg.init)
        if cfg.output_bias == "data-mean":
            self.model.params["Decoder.FC_output.bias"][...] = data_mean_bias(
                images.train, cfg.binarize, self.model.dtype)
        self.opt = Adam(self.model.num_params, cfg.dtype, lr=cfg.lr, eps=cfg.adam_eps,
                        backend=cfg.backend)
        self.rng = train_generator(cfg.seed)
        self.history = {c: [] for c in ckpt_io.HISTORY_COLUMNS}
        self.epoch, self.step, self.order, self.running, self.elapsed = 0, 0, None, 0.0, 0.0
        self.steps = data.num_batches(len(images.train), cfg.batch_size)
        self.ckpt_path = out / "checkpoint.npz"
        if resume is not None:
            self._restore(resume)
        # never a smaller --epochs than the run has (a resume with nothing left to train);
        # the arithmetic it computed with, a new entry where this stretch's is another
        recorded = resume.config.get("arithmetic") if resume is not None else None
        if arith is not None and (self.epoch < cfg.epochs or self.step):
            recorded = arithmetic.extend(recorded, arith, self.epoch, self.step)
        self.config = dict(asdict(cfg), epochs=max(cfg.epochs, self.epoch),
                           num_params=self.model.num_params,
                           **({"arithmetic": recorded} if recorded else {}))
        self.take_batch = backends.batch_taker(cfg.backend, images.train, cfg.batch_size,
                                               cfg.binarize, self.rng, self.model.dtype)
        warm_up(self.model, cfg.samples, cfg.binarize, images.train, cfg.objective,
                cfg.estimator)
        self.eps_bufs = {}                                  # batch size -> (L, b, Z) buffer
        if resume is not None:
            self.record()                 # restores config.json and metrics.csv if lost

    def _restore(self, ck):
        check_position(ck, len(self.images.train), self.steps, self.ckpt_path)
        self.model.load_params(ck.params)
        self.opt.m[...], self.opt.v[...], self.opt.t = ck.adam_m, ck.adam_v, ck.adam_t
        self.rng.bit_generator.state = ck.rng_state
        self.history = {c: list(v) for c, v in ck.history.items()}
        self.epoch, self.step = ck.epoch, ck.step_in_epoch
        if self.step:
            self.order, self.running, self.elapsed = ck.order, ck.running_loss, ck.epoch_elapsed

    def record(self):
        """config.json and metrics.csv, as of the last checkpoint."""
        write_config(self.out, self.config)
        columns = [c for c in ckpt_io.HISTORY_COLUMNS
                   if self.cfg.holdout or c != "holdout_neg_elbo"]   # held-out −ELBO if any
        write_metrics(self.out, self.history, columns, self.cfg.binarize,
                      {"train_neg_elbo": training_column(self.cfg)})

    def save(self):
        """The checkpoint of where training stands, then config.json and metrics.csv. Nothing
        non-finite is ever stored, so every checkpoint written can be read, resumed and
        evaluated: a non-finite gradient turns its parameter NaN (model.train_step) — the step
        after would stop on its loss, but a checkpoint may come first — and a diverging run
        can overflow Adam's moments (g² beyond float32's range) while its loss is still a
        number."""
        where = (f"at the end of epoch {self.epoch}" if self.step == 0 else
                 f"after step {self.step} of {self.steps} of epoch {self.epoch + 1}")
        if not np.isfinite(self.model.flat).all():
            raise NonFinite(f"non-finite parameters {where} (a gradient was not finite); "
                            f"training stopped")
        if not (np.isfinite(self.opt.m).all() and np.isfinite(self.opt.v).all()):
            raise NonFinite(f"Adam's moments overflowed {where}: the run diverged (a smaller "
                            f"--lr keeps it finite); training stopped")
        ckpt_io.save(self.ckpt_path, ckpt_io.Checkpoint(
            params={k: v.copy() for k, v in self.model.params.items()}, config=self.config,
            adam_m=self.opt.m.copy(), adam_v=self.opt.v.copy(), adam_t=self.opt.t,
            rng_state=self.rng.bit_generator.state, epoch=self.epoch, step_in_epoch=self.step,
            order=self.order if self.step else np.zeros(0, np.int64), running_loss=self.running,
            epoch_elapsed=self.elapsed, history=self.history))
        self.record()

    # ------------------------------------------------------------------------ the loop

    def train_epoch(self, stop):
        """Train epoch `self.epoch` from step `self.step` to its end. Returns False when a
        signal stopped it before the end (a checkpoint of that step is written), else True."""
        cfg, model, rng = self.cfg, self.model, self.rng
        N, B, L = len(self.images.train), cfg.batch_size, cfg.samples
        if self.order is None or self.step == 0:                  # a new epoch: a new order
            self.order, self.running, self.elapsed = data.epoch_order(N, rng), 0.0, 0.0
            self.step = 0
        self.opt.lr = learning_rate(cfg, self.epoch)
        bar = tqdm(total=self.steps, initial=self.step, unit="batch", leave=False,
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", dynamic_ncols=True,
                   mininterval=0.5)
        t0 = time.perf_counter()
        for step in range(self.step, self.steps):
            x = self.take_batch(self.order[step * B:(step + 1) * B])    # (b, D)
            b = len(x)
            if b not in self.eps_bufs:
                self.eps_bufs[b] = np.empty((L, b, cfg.latent_dim), model.dtype)
            eps = rng.standard_normal(dtype=model.dtype, out=self.eps_bufs[b])
            try:
                self.running += model.train_step(x, eps if L > 1 else eps[0], self.opt,
                                                 cfg.objective, cfg.estimator)
            except FloatingPointError as err:        # the model is spoilt; the checkpoint is not
                bar.close()
                raise NonFinite(f"{err} at epoch {self.epoch + 1}, step {step + 1} of "
                                f"{self.steps}; training stopped") from None
            bar.update()
            if step % 20 == 0 or step == self.steps - 1:
                bar.set_postfix_str(f"{training_loss(cfg)}/image "
                                    f"{self.running / min(N, (step + 1) * B):.2f}", refresh=False)
            if stop.signum is not None and step < self.steps - 1:
                self.elapsed += time.perf_counter() - t0
                bar.close()
                self.step = step + 1
                self.save()
                return False
        self.elapsed += time.perf_counter() - t0
        bar.close()
        return True

    def end_epoch(self, log):
        """After epoch `self.epoch`'s last step: its test (and held-out) −ELBO, a row of the
        history, the checkpoint, and the line printed."""
        cfg, images, model = self.cfg, self.images, self.model
        test, recon, kl = evaluate_test(model, images.test, cfg.seed, cfg.binarize)
        held = (evaluate_test(model, images.held, cfg.seed, cfg.binarize,
                              streams=HOLDOUT_STREAMS)[0] if cfg.holdout else float("nan"))
        row = dict(epoch=self.epoch + 1, train_neg_elbo=self.running / len(images.train),
                   test_neg_elbo=test, test_recon=recon, test_kl=kl,
                   epoch_seconds=self.elapsed, holdout_neg_elbo=held)
        for c in ckpt_io.HISTORY_COLUMNS:
            self.history[c].append(float(row[c]))
        self.epoch, self.step, self.order, self.running, self.elapsed = (
            self.epoch + 1, 0, None, 0.0, 0.0)
        self.save()
        log(f"epoch {row['epoch']:3d}/{cfg.epochs}  train {training_loss(cfg)} "
            f"{row['train_neg_elbo']:8.3f}  "
            f"test −ELBO {test:8.3f} (recon {recon:.3f} + KL {kl:.3f}) nats/image "
            + (f"held-out −ELBO {held:8.3f} " if cfg.holdout else "")
            + f"[{cfg.binarize}]  {row['epoch_seconds']:.2f} s")


def run(cfg, out, resume=None, log=print, stop=None):
    """Train according to cfg into the folder `out`, from scratch or from `resume` (a
    checkpoint.Checkpoint), up to cfg.epochs, then draw the pictures.

    stop: the StopRequest installed by the caller (main), or None to install one here.
    Returns (history, the signal number that stopped it, or None); raises NonFinite when a loss
    or gradient stops being finite. A resumed run with no epochs left only redraws the pictures.
    The run's files appear with its first checkpoint: config.json and metrics.csv are written
    after each checkpoint (and, resuming, at the start), so a run stopped before its first
    checkpoint leaves nothing behind and the same command starts it again.
    """
    if stop is None:
        with StopRequest() as stop:
            return run(cfg, out, resume, log, stop)
    images = load_images(cfg)
    cfg = replace(cfg, blas_threads=blas_threads(cfg, images, log))    # a count, recorded
    count, line = threads.fitted(cfg.blas_threads)       # a resumed run's, on fewer cores
    if line:
        log(line)
    with threads.limited(count):
        line = threads.shortfall(count)
        if line:
            log(line)
        arith = arithmetic.record()
        log(arithmetic.describe(arith))
        line = resume is not None and arithmetic.resumed_line(
            resume.config.get("arithmetic"), arith)
        if line:
            log(line)
        return _run(cfg, out, images, resume, log, stop, arith)


def _run(cfg, out, images, resume, log, stop, arith=None):
    t = Training(cfg, out, images, resume, arith)
    stop.starting = False                 # from here a signal is a checkpoint, not an exception
    if stop.signum is not None:           # one arrived, but its exception was lost on the way
        raise Stopped(stop.signum)        # (swallowed by a callback): nothing trained, nothing to save
    while t.epoch < cfg.epochs:
        if not t.train_epoch(stop):
            return t.history, stop.signum
        t.end_epoch(log)
        if stop.signum is not None:
            return t.history, stop.signum
    plots.draw_run(out, t.model, t.history, images.test, images.test_labels, cfg,
                   stop=lambda: stop.signum is not None)
    return t.history, stop.signum


def check_position(ck, n, steps, path):
    """Refuse a checkpoint whose place in training does not fit this dataset and batch size."""
    if ck.step_in_epoch:
        if ck.step_in_epoch >= steps:
            raise CheckpointError(f"{path}: stopped at step {ck.step_in_epoch} of an "
                                          f"epoch that has {steps}")
        if len(ck.order) != n or not np.array_equal(np.sort(ck.order), np.arange(n)):
            raise CheckpointError(f"{path}: its epoch order is not a permutation of "
                                          f"the {n} training images")
    if ck.adam_t != ck.epoch * steps + ck.step_in_epoch:
        raise CheckpointError(f"{path}: Adam has taken {ck.adam_t} steps, but epoch "
                                      f"{ck.epoch} step {ck.step_in_epoch} at {steps} steps per "
                                      f"epoch means {ck.epoch * steps + ck.step_in_epoch}")


# ---------------------------------------------------------------------------- the command

def main(argv=None, cli=False, prog="python -m numpyvae.train"):
    """The command: parse argv, train, report. Returns the exit status (numpyvae.run.cli.run_command:
    2 for a usage error, 1 for bad data, a bad checkpoint, a busy folder or a failed write; a
    stop by a signal 128 + its number, a non-finite loss EXIT_NONFINITE).

    cli=True when this is the whole process (python -m numpyvae.train): then a stopped run
    ignores further signals while it exits. prog: the command as it was typed (`numpyvae
    train`), for its usage and the line that says how to continue.
    """
    args = build_parser(prog).parse_args(argv)
    args.prog = prog
    where = {"out": args.out}             # the run folder, once known: for a failed write's line
    # A diverging run stops on its first non-finite loss with one line (NonFinite); numpy's
    # overflow warnings on the way there would only bury it.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run_command(lambda: _train(args, cli, where),
                           os_error=lambda e: f"cannot write the run into {where['out']}: "
                                              f"{e.strerror or e} ({e.filename or where['out']})")


def _train(args, cli, where):
    """main's work. The run folder is locked (numpyvae/run/lock.py) from before anything is read or
    written in it until the command ends: a second command on the same folder is refused at
    once. Folders made for a run that never started are removed again."""
    made, lock, stopped = [], None, None
    try:
        with StopRequest(ignore_after=cli) as stop:
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            if args.out == "":
                raise UsageError('--out "": an empty path; name the run folder (or leave --out '
                                 'out for runs/<timestamp>)')
            out = where["out"] = Path(args.out) if args.out else Path("runs") / stamp
            if os.path.lexists(out) and not out.is_dir():
                raise UsageError(f"--out {out}: {file_kind(out)} is there, not a folder; a run "
                                 f"needs a folder of its own — choose another --out")
            if args.resume:
                resume_path(args)                                # before the folder is locked
            else:
                cfg, resume = resolve_config(args)               # flag errors before mkdir
                made = folders_to_make(out)
                out.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out, purpose=TRAINING)   # assigned first: `finally` releases a
                                                    # half-taken one
            lock.acquire()
            remove_stale_temp_files(out, RUN_FILES)       # a killed train's: what it writes
            if args.resume:
                cfg, resume = resolve_config(args)               # read under the folder's lock
            else:
                refuse_taken(out)
            if resume is not None and resume.step_in_epoch and cfg.epochs <= resume.epoch:
                raise UsageError(f"the run in {out} stopped inside epoch {resume.epoch + 1}; "
                                 f"--epochs must be at least {resume.epoch + 1}")
            if resume is not None and resume.epoch >= cfg.epochs and not resume.step_in_epoch:
                print(f"{one_line(out)}: the run already has {resume.epoch} epochs "
                      f"(--epochs {cfg.epochs}); nothing to train, redrawing its pictures")
            memory_check(cfg)
            print(f"numpyvae: {cfg.dataset} [{cfg.binarize}], VAE {cfg.x_dim}-{cfg.hidden_dim}-"
                  f"{cfg.latent_dim} {cfg.activation} ({cfg.init} init), batch {cfg.batch_size}, "
                  + (f"L={cfg.samples}" if cfg.objective == "elbo" else
                     f"IWAE K={cfg.samples} ({cfg.estimator})")
                  + f", Adam lr {cfg.lr} ({cfg.lr_schedule}) ε {cfg.adam_eps}, "
                  f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, seed {cfg.seed}, "
                  f"{cfg.dtype}/{cfg.backend} -> {one_line(out)}")
            if resume is not None and (resume.step_in_epoch or resume.epoch < cfg.epochs):
                print(f"resuming at epoch {resume.epoch + 1}"
                      + (f", step {resume.step_in_epoch + 1}" if resume.step_in_epoch else "")
                      + f", from {one_line(out / 'checkpoint.npz')}, with "
                      + (f"the run's {cfg.blas_threads} BLAS thread"
                         + "s" * (cfg.blas_threads != 1) if cfg.blas_threads is not None
                         else "BLAS threads as the environment makes them (the run's)"))
            if resume is not None:
                line = hand_edits(out / "config.json", resume.config)
                if line:
                    print(one_line(line))
            _, stopped = run(cfg, out, resume, stop=stop)
    except KeyboardInterrupt as e:        # Stopped: a signal during start-up
        signum = getattr(e, "signum", signal.SIGINT)
        say(f"interrupted ({signal_name(signum)}) before training began; nothing was "
            "written — run the same command to start again")
        return 128 + signum
    except NonFinite as e:
        kept = where["out"] / "checkpoint.npz"
        say(f"error: {one_line(e)}. The last good checkpoint is kept"
            + (f": {one_line(kept)}" if kept.exists() else
               " (none was written yet: the same command starts the run again)"))
        return EXIT_NONFINITE
    finally:
        if lock is not None:
            lock.release()
        remove_if_empty(made)
    if stopped is not None:
        say(f"stopped by {signal_name(stopped)}; checkpoint written to "
            f"{one_line(out / 'checkpoint.npz')}. Continue with: "
            f"{args.prog} --resume --out {one_line(out)}")
        return 128 + stopped                       # the shell's convention: 130 for SIGINT
    print(f"done: {one_line(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(cli=True))
