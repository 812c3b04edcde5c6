"""What a command evaluates a run on: the random streams, the images of a split as the run saw
them, and the test −ELBO that training reports every epoch. Shared by numpyvae's evaluate,
train and sample, and by the reference's evaluate and gradcheck, so that each sees the same
images, the same binarization draw and the same ε.
"""
import logging
import os
from pathlib import Path

import numpy as np

from .. import data
from ..datasets.fetch import DEFAULT_DATA_DIR, data_root, holds
from ..errors import RunLocked, UsageError
from ..likelihood import neg_elbo_per_image
from ..oracle.binarize import batch_into, hold_out
from .lock import TRAINING, holder


# The random streams: each is np.random.default_rng([seed, purpose]) (or the same SeedSequence),
# so no part of a run shifts another's draws.
#   1     training: the epoch order, dynamic binarization and ε   train.train_generator
#   2, 3  the test set's ε and its one binarization draw          evaluate_test, eval_inputs
#   4     the pictures                                            run/plots.py
#   5     evaluate's importance samples (seed: evaluate --seed)   evaluate.py, reference/evaluate.py
#   6, 7  the held-out images' ε and binarization (--holdout)     evaluate_test, eval_inputs
# The model's initialisation draws from default_rng(seed) itself (model.VAE).
TEST_STREAMS, HOLDOUT_STREAMS, IMPORTANCE_STREAM = (2, 3), (6, 7), 5

log = logging.getLogger(__name__)


def eval_generator(seed, purpose):
    """A separate, fixed stream for evaluation (`purpose`: the table above)."""
    return np.random.default_rng([seed, purpose])


def eval_inputs(images, seed, mode, dtype, stream=TEST_STREAMS[1]):
    """The images as the run's evaluation sees them, (N, D) of `dtype`: binarized by one draw
    of its fixed binarization stream — image i gets the same draw here as in evaluate_test's
    chunks (the stream is consumed image by image, in order)."""
    flat = images.reshape(len(images), -1)                                      # (N, D)
    return batch_into(flat, np.arange(len(flat)), mode, eval_generator(seed, stream),
                           np.empty(flat.shape, dtype))


def evaluate_test(model, images, seed, mode, batch=1000, streams=TEST_STREAMS):
    """Test −ELBO per image and its two parts, each a float (nats/image), with the run's fixed
    evaluation ε and binarization (the `streams` of `seed`; `mode` one of data.BINARIZE_MODES):
    a dynamically binarized image is one fixed draw, the same at every evaluation."""
    rng_eps, rng_bin = eval_generator(seed, streams[0]), eval_generator(seed, streams[1])
    flat = images.reshape(len(images), -1)
    buf = np.empty((min(batch, len(flat)), flat.shape[1]), model.dtype)
    recon = kl = 0.0
    for start in range(0, len(flat), batch):
        idx = np.arange(start, min(start + batch, len(flat)))
        x = batch_into(flat, idx, mode, rng_bin, buf)
        eps = rng_eps.standard_normal((len(idx), model.latent_dim), dtype=model.dtype)
        r, d = neg_elbo_per_image(model, x, eps)              # (B,) reconstruction, (B,) KL
        recon += r.sum()
        kl += d.sum()
    n = len(flat)
    return (recon + kl) / n, recon / n, kl / n


def data_folder(flag, cfg, splits=("test",)):
    """Where a command reads a run's images of `splits`: --data-dir when given; else the folder
    the run recorded (its config's data_dir, absolute since numpyvae records it so) when it
    holds those files already; else None, the default (~/datasets), with a line saying so.

    A path read from a file is never created or fetched into: a run folder copied from another
    machine, or a hostile one, must not choose where this one writes 55 MB."""
    recorded = cfg.get("data_dir")
    if flag is not None or recorded is None:
        return flag
    if os.path.abspath(recorded) == os.path.abspath(data_root(None)) or all(
            holds(cfg["dataset"], split, recorded) for split in splits):
        return recorded                     # the default folder itself: fetched into anyway
    log.info("the run's data folder %s does not hold its %s files; reading %s instead "
             "(--data-dir names another)", recorded,
             " and ".join(f"{cfg['dataset']} {split}" for split in splits), DEFAULT_DATA_DIR)
    return None


def split_images(cfg, split, data_dir=None):
    """The images of `split` as the run drew them: its --limit, then its --holdout (the last
    N training images), off the training split; the test split whole."""
    if split == "test":
        return data.load(cfg["dataset"], "test", data_dir)[0]
    if split == "holdout" and not cfg["holdout"]:
        raise UsageError("--split holdout: this run held no training images out (--holdout 0)")
    images = data.load(cfg["dataset"], "train", data_dir)[0]
    images = images[:cfg["limit"]] if cfg["limit"] else images
    kept, held = hold_out(images, cfg["holdout"])
    return held if split == "holdout" else kept


def training_now(checkpoint):
    """For a command that reads a run: None when no training holds its folder, else the line
    saying that one does — its checkpoint is the latest epoch's, not the finished run's; and
    RunLocked while that training has not yet written its first checkpoint."""
    folder = run_folder_of(checkpoint)
    held = holder(folder)
    if held is None or held[1] != TRAINING:
        return None
    path = Path(checkpoint)
    if not (path / "checkpoint.npz" if path.is_dir() else path).exists():
        raise RunLocked(f"{folder} is still training its first epoch (PID {held[0]}): it has no "
                        f"checkpoint yet — run this again once the first epoch is done")
    return (f"{folder} is being trained now (PID {held[0]}): this reads its latest checkpoint, "
            f"written at the end of each epoch, not the finished run")


def run_folder_of(checkpoint):
    """The folder of a checkpoint argument: the run folder itself, or a checkpoint file's."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent
