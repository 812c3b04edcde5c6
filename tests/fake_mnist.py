"""Small synthetic MNIST-shaped data for CLI tests: 10 blurred prototype 'digits' plus noise.

`install(monkeypatch)` makes numpyvae.data.load return it; `PRELUDE` does the same at the top
of a `python -c` program, for tests that run the CLI in a subprocess.
"""
import numpy as np


def make(n, seed):
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(0).random((10, 28, 28)) ** 3 * 255        # (10, 28, 28)
    labels = rng.integers(0, 10, n).astype(np.uint8)                         # (n,)
    noise = rng.normal(0, 40, (n, 28, 28))
    images = np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)        # (n, 28, 28)
    return images, labels


def load(name, split="train", data_dir=None):
    return make(1200, 1) if split == "train" else make(300, 2)


def install(monkeypatch):
    import numpyvae.data
    monkeypatch.setattr(numpyvae.data, "load", load)


PRELUDE = ("import sys; sys.path.insert(0, {tests!r}); import fake_mnist, numpyvae.data; "
           "numpyvae.data.load = fake_mnist.load; from numpyvae.train import main; ")
# then e.g. "sys.exit(main([...], cli=True))", as `python -m numpyvae.train` does
