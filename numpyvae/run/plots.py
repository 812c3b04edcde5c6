"""The pictures of a run: −ELBO curves, reconstructions, generated digits, the latent space.

Every function takes arrays and a file path and writes one PNG (atomically, like every file
numpyvae writes). Matplotlib is used through its object API with the Agg canvas, so no
display or global backend state is involved.
"""
import os
import struct

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image                   # matplotlib's own dependency: a plain greyscale PNG
from PIL.PngImagePlugin import PngInfo
from scipy.special import ndtri          # the standard normal's quantile function

from ..atomic import atomic_write
from ..oracle.binarize import batch_into
from .config import training_loss

# What a dataset's images are called in titles, and its ten classes' names.
NOUNS = {"mnist": "digits", "fashion-mnist": "Fashion-MNIST images"}
CLASSES = {"mnist": tuple(str(d) for d in range(10)),
           "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                             "Shirt", "Sneaker", "Bag", "Ankle boot")}
# Up to this many images a grid is a titled matplotlib figure; above it, the grid is written
# pixel for pixel as a plain greyscale PNG, built from blocks, so its memory is the picture's.
FIGURE_MAX_IMAGES = 1024
# A picture's stamp: a PNG text chunk under this key saying what it shows (sample: which
# checkpoint, which request), so that the same command run again knows its own picture.
STAMP_KEY = "numpyvae"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _save(fig, path, stamp=None):
    FigureCanvasAgg(fig)
    metadata = {STAMP_KEY: stamp} if stamp is not None else None
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight",
                                             metadata=metadata))


def stamp_of(path):
    """The stamp numpyvae wrote into the PNG at `path` (its STAMP_KEY text chunk), or None:
    not a regular file, not a PNG, no stamp, unreadable. Reads the chunks' headers only."""
    if os.path.islink(path) or not os.path.isfile(path):       # a FIFO would block the read
        return None
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return None
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return None
                size, kind = struct.unpack(">I4s", head)
                if kind == b"tEXt" and size <= 1 << 16:
                    key, _, text = f.read(size).partition(b"\0")
                    if key == STAMP_KEY.encode():
                        return text.decode("latin-1")
                    f.seek(4, os.SEEK_CUR)
                elif kind == b"IEND":
                    return None
                else:
                    f.seek(size + 4, os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def tile(images, cols):
    """(n, h, w) -> one (rows·h, cols·w) mosaic, filled row by row, blank where n runs out."""
    n, h, w = images.shape
    rows = -(-n // cols)
    grid = np.ones((rows * h, cols * w), images.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    return grid


def _image(path, mosaic, title, stamp=None):
    h, w = mosaic.shape
    fig = Figure(figsize=(max(3.0, w / 40), max(1.5, h / 40 + 0.4)))
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    _save(fig, path, stamp)


def elbo_curves(path, history, mode, train_loss="−ELBO"):
    """The training loss (`train_loss`: "−ELBO", or "−L_5" for a run on the bound) and the
    test −ELBO, epoch by epoch."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    train = "train" if train_loss == "−ELBO" else f"train {train_loss} (the bound it trains on)"
    ax.plot(history["epoch"], history["train_neg_elbo"], "o-", label=train)
    ax.plot(history["epoch"], history["test_neg_elbo"], "s-", label="test −ELBO")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max(history["epoch"]) + 0.5)    # whole epochs, a 1-epoch run included
    ax.set_ylabel("−ELBO (nats per image)")
    ax.set_title(f"−ELBO per image [{mode} binarization]; last test "
                 f"{history['test_neg_elbo'][-1]:.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def reconstructions(path, x, theta, side=28, dataset="mnist"):
    """Test images (top row) above their reconstructions θ (bottom row), as compare_images."""
    n = len(x)
    both = np.concatenate([x.reshape(n, side, side), theta.reshape(n, side, side)])
    _image(path, tile(both, n), f"test {NOUNS[dataset]} (top) and reconstructions θ(μ) (bottom)")


def samples(path, theta, side=28, dataset="mnist"):
    """Images decoded from z ~ N(0, I): the Bernoulli means θ."""
    n = len(theta)
    _image(path, tile(theta.reshape(n, side, side), int(np.ceil(np.sqrt(n)))),
           f"{n} {NOUNS[dataset]} generated from z ~ N(0, I)")


def grid_bytes(n, cols, side=28):
    """The memory grid() needs beyond one block: the pixel mosaic when n > FIGURE_MAX_IMAGES."""
    return -(-n // cols) * cols * side * side if n > FIGURE_MAX_IMAGES else 0


def grid(path, blocks, n, cols, title, side=28, stamp=None):
    """n images θ arriving in `blocks` (an iterable of (b, side²) arrays, in order) as a grid
    of `cols` columns: a titled figure up to FIGURE_MAX_IMAGES, else one byte per pixel
    (θ = 1 black, as the figures' gray_r) in a plain greyscale PNG without a title. `stamp`:
    a text saying what it shows, read back by stamp_of."""
    if n <= FIGURE_MAX_IMAGES:
        theta = np.concatenate(list(blocks))                          # (n, side²)
        _image(path, tile(theta.reshape(n, side, side), cols), title, stamp)
        return
    rows = -(-n // cols)
    mosaic = np.full((rows, side, cols, side), 255, np.uint8)         # (rows, side, cols, side)
    done = 0
    for theta in blocks:
        pixels = 255 - np.rint(np.clip(theta, 0, 1) * 255).astype(np.uint8)   # (b, side²)
        cell = np.arange(done, done + len(pixels))                     # (b,)
        mosaic[cell // cols, :, cell % cols, :] = pixels.reshape(-1, side, side)
        done += len(pixels)
    picture = Image.fromarray(mosaic.reshape(rows * side, cols * side))
    info = PngInfo()
    if stamp is not None:
        info.add_text(STAMP_KEY, stamp)
    atomic_write(path, lambda f: picture.save(f, format="png", compress_level=1,   # fast zlib
                                              pnginfo=info))


def _scatter(fig, ax, mu, labels, dataset="mnist"):
    """Posterior means coloured by class; projected to their 2 principal axes when Z > 2."""
    Z = mu.shape[1]
    if Z == 1:
        pts, axes = np.column_stack([mu[:, 0], np.zeros(len(mu))]), ("z₁", "")
    elif Z == 2:
        pts, axes = mu, ("z₁", "z₂")
    else:
        centred = mu - mu.mean(axis=0)                                # (N, Z)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)        # min(N, Z) axes
        k = min(2, len(vt))
        pts = np.zeros((len(mu), 2))                                  # (N, 2)
        pts[:, :k] = centred @ vt[:k].T
        var = np.zeros(2)
        var[:k] = s[:k] ** 2
        total = np.sum(s ** 2)
        share = var / total if total > 0 else var          # one point, or all alike: none
        axes = (f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%})")
    sc = ax.scatter(pts[:, 0], pts[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=2,
                    alpha=0.6, rasterized=True)
    bar = fig.colorbar(sc, ax=ax, ticks=range(10), label="digit" if dataset == "mnist" else "class")
    # the classes as large as the axes' labels (7 pt was unreadable at 100 dpi)
    bar.ax.set_yticklabels(CLASSES[dataset], fontsize=ax.xaxis.label.get_fontsize())
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"test posterior means μ (latent dim {Z})", fontsize=9)


def latent(path, mu, labels, decode=None, n=20, side=28, dataset="mnist"):
    """The latent space: a scatter of μ; with a 2-D latent and `decode`, also the learned
    manifold of Kingma & Welling (2014) Fig. 4 — θ(z) over a grid through Φ⁻¹(0.05 … 0.95)."""
    two = mu.shape[1] == 2 and decode is not None
    fig = Figure(figsize=(12 if two else 6, 5.5))
    _scatter(fig, fig.add_subplot(1, 2 if two else 1, 1), mu, labels, dataset)
    if two:
        q = ndtri(np.linspace(0.05, 0.95, n))
        z = np.array([[a, b] for b in q[::-1] for a in q])               # (n·n, 2), z₂ up
        theta = decode(z)                                                 # (n·n, side²)
        ax = fig.add_subplot(1, 2, 2)
        ax.imshow(tile(theta.reshape(n * n, side, side), n), cmap="gray_r", vmin=0, vmax=1,
                  extent=(q[0], q[-1], q[0], q[-1]))
        ax.set_xlabel("z₁")
        ax.set_ylabel("z₂")
        ax.set_title("learned manifold θ(z), z on a grid of Φ⁻¹(0.05 … 0.95)", fontsize=9)
    _save(fig, path)


def draw_run(out, model, history, test_images, test_labels, cfg, rng=None, stop=None):
    """All pictures of a finished run into the folder `out`.

    stop: a callable; when it returns true between two pictures, the rest are not drawn (a
    signal during the pictures; each picture is written atomically, so each is whole or absent).
    Returns True when all were drawn."""
    stop = stop or (lambda: False)
    rng = rng if rng is not None else np.random.default_rng([cfg.seed, 4])
    flat = test_images.reshape(len(test_images), -1)
    elbo_curves(out / "elbo.png", history, cfg.binarize, training_loss(cfg))
    if stop():
        return False
    n = min(10, len(flat))
    x = batch_into(flat, np.arange(n), cfg.binarize, rng,
                        np.empty((n, flat.shape[1]), model.dtype))
    mu, _ = model.encode(x)
    reconstructions(out / "reconstructions.png", x, model.decode(mu), dataset=cfg.dataset)
    if stop():
        return False
    samples(out / "samples.png", model.decode(rng.standard_normal((64, model.latent_dim))),
            dataset=cfg.dataset)
    if stop():
        return False
    m = min(5000, len(flat))
    xs = batch_into(flat, np.arange(m), cfg.binarize, rng,
                         np.empty((m, flat.shape[1]), model.dtype))
    latent(out / "latent.png", model.encode(xs)[0], test_labels[:m], decode=model.decode,
           dataset=cfg.dataset)
    return True
