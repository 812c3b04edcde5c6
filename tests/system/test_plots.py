"""numpyvae.run.plots: every picture of a run, for any dataset size, named for its dataset.

Oracles: the files on disk (a PNG's signature); the titles and labels handed to matplotlib.
"""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import numpyvae as nv
from numpyvae import plots

PNG = b"\x89PNG\r\n\x1a\n"


def history(epochs=2):
    return {"epoch": list(range(1, epochs + 1)), "train_neg_elbo": [200.0, 150.0][:epochs],
            "test_neg_elbo": [210.0, 160.0][:epochs]}


@pytest.mark.parametrize("n,latent_dim", [(1, 1), (1, 2), (1, 5), (2, 5)])
def test_a_run_of_one_or_two_test_images_draws_every_picture(tmp_path, latent_dim, n):
    """--limit 1 leaves one test image: one posterior mean, no variance to project."""
    model = nv.VAE(784, 8, latent_dim, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    cfg = SimpleNamespace(seed=0, binarize="threshold", dataset="mnist", objective="elbo",
                          samples=1)
    assert plots.draw_run(tmp_path, model, history(), images, np.arange(n, dtype=np.uint8), cfg)
    for name in ("elbo.png", "reconstructions.png", "samples.png", "latent.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG, name


def test_identical_means_have_no_principal_axes(tmp_path):
    mu = np.ones((5, 4))                                     # all alike: zero variance
    plots.latent(tmp_path / "l.png", mu, np.zeros(5, np.uint8))
    assert (tmp_path / "l.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("dataset,noun,forbidden", [
    ("fashion-mnist", "Fashion-MNIST images", "digit"), ("mnist", "digits", "Fashion")])
def test_pictures_name_the_datasets_images(tmp_path, monkeypatch, dataset, noun, forbidden):
    titles, labels = [], []
    monkeypatch.setattr(plots, "_image", lambda path, mosaic, title: titles.append(title))
    real_scatter = plots._scatter

    def scatter(fig, ax, mu, lab, dataset="mnist"):
        real_scatter(fig, ax, mu, lab, dataset)
        bar = fig.axes[-1]
        labels.extend([bar.get_ylabel()] + [t.get_text() for t in bar.get_yticklabels()])
    monkeypatch.setattr(plots, "_scatter", scatter)
    model = nv.VAE(784, 8, 3, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    cfg = SimpleNamespace(seed=0, binarize="threshold", dataset=dataset, objective="elbo",
                          samples=1)
    plots.draw_run(tmp_path, model, history(), images, np.arange(12, dtype=np.uint8) % 10, cfg)
    assert len(titles) == 2 and all(noun in t and forbidden not in t for t in titles), titles
    if dataset == "fashion-mnist":
        assert labels[0] == "class" and "Ankle boot" in labels
    else:
        assert labels[0] == "digit" and labels[1:] == [str(d) for d in range(10)]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_the_colour_bar_reads_as_the_axes_do(dataset):
    """latent.png's class names were 7 pt at 100 dpi, unreadably small. Oracle: matplotlib's
    own sizes — each class name as large as the axes' labels."""
    from matplotlib.figure import Figure
    fig = Figure()
    ax = fig.add_subplot()
    plots._scatter(fig, ax, np.random.default_rng(0).standard_normal((20, 3)),
                   np.arange(20, dtype=np.uint8) % 10, dataset)
    sizes = {t.get_fontsize() for t in fig.axes[-1].get_yticklabels()}
    assert sizes == {ax.xaxis.label.get_fontsize()} and min(sizes) >= 10


def test_drawing_stops_between_pictures_when_asked(tmp_path):
    model = nv.VAE(784, 8, 3, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    cfg = SimpleNamespace(seed=0, binarize="threshold", dataset="mnist", objective="elbo",
                          samples=1)
    calls = []
    assert not plots.draw_run(tmp_path, model, history(), images, np.arange(4, dtype=np.uint8),
                              cfg, stop=lambda: calls.append(1) or len(calls) >= 2)
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["elbo.png", "reconstructions.png"]
