"""Every setting of a training run, each written once: its type, valid values, default, help
text, whether a resumed run must keep it, the checkpoint format that first recorded it, and
what an older checkpoint (written before the setting existed) means by its absence.

Everything else derives from SETTINGS: the `Config` dataclass, train's flags (and the Torch
reference's shared ones), the checks a checkpoint's recorded configuration must pass
(`check_value`, `absent_before`), FIXED_ON_RESUME and the presets' validity. Adding a setting
is one entry here plus the code that uses it.

    cfg = Config(batch_size=20)              # the run's settings, defaults for the rest
    add_flags(parser, ("epochs", "lr"))      # --epochs, --lr with their types and help
"""
import math
import os
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable

from ..backend import BACKENDS
from ..backend import DEFAULT as DEFAULT_BACKEND
from ..datasets.fetch import DATASETS, MAX_TRAIN_IMAGES
from ..oracle.activations import ACTIVATIONS
from ..oracle.binarize import BINARIZE_MODES
from ..oracle.iwae import ESTIMATORS, OBJECTIVES
from ..oracle.network import INITS
from ..threads import AUTO, MAX_THREADS
from .cli import decimal_int, flag_type, int_in, positive_float

DTYPES = ("float32", "float64")
OUTPUT_BIASES = ("init", "data-mean")
LR_SCHEDULES = ("constant", "burda")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Kind:
    """What a setting's values are: `check` for a recorded value (JSON), `flag` for argparse's
    type=, `choices` for argparse's choices=, `expected` in words for error messages."""
    check: Callable[[Any], bool]
    expected: str
    flag: Callable[[str], Any] = None
    choices: tuple = None


def integer(low, high):
    """An integer from low to high. Every size and count has an upper bound, so no value that
    passes can overflow the arithmetic it feeds (memory estimates, shapes, file names)."""
    return Kind(lambda v: _is_int(v) and low <= v <= high, f"an integer from {low} to {high:,}",
                int_in(low, high))


POSITIVE = Kind(lambda v: _is_number(v) and v > 0, "a positive number", positive_float)


def one_of(*choices):
    names = [repr(c) for c in choices]
    words = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return Kind(lambda v: isinstance(v, str) and v in choices, words, None, tuple(choices))


def text_or_null(what):
    return Kind(lambda v: v is None or isinstance(v, str), f"{what} or null", str)


def absolute_folder(text):
    """A folder flag's text as an absolute path, ~ expanded: a run records where its data is,
    so that a later command, started from another directory, looks in the same folder."""
    if not text.strip():
        raise ValueError("an empty folder name")
    return os.path.abspath(os.path.expanduser(text))


# A folder given as a flag is recorded absolute. A relative name recorded by numpyvae before
# this is read as written: relative to the directory the later command runs in.
FOLDER_OR_NULL = Kind(lambda v: v is None or isinstance(v, str), "a folder name or null",
                      flag_type(absolute_folder, lambda v: True, "a folder name"))


# The BLAS's threads (numpyvae/threads.py): "auto" or a count as a flag; a recorded run holds
# the count it trained with, or null — recorded before the setting existed: as the environment.
BLAS_THREADS = Kind(lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_THREADS),
                    f"an integer from 1 to {MAX_THREADS:,} or null",
                    flag_type(lambda t: t.strip() if t.strip() == AUTO else decimal_int(t),
                              lambda v: v == AUTO or 1 <= v <= MAX_THREADS,
                              f"{AUTO!r} or an integer from 1 to {MAX_THREADS:,}"))


# The estimator of an iwae run (null for an elbo run, which has none).
ESTIMATOR = Kind(lambda v: v is None or (isinstance(v, str) and v in ESTIMATORS),
                 f"{', '.join(map(repr, ESTIMATORS))} or null", None, ESTIMATORS)


@dataclass(frozen=True)
class Setting:
    name: str                    # the Config field, config.json key and flag (--name-with-dashes)
    default: Any
    kind: Kind
    help: str = None             # --help text, "{default}" filled in; None: not a flag of train
    fixed: bool = True           # a resumed run must keep it (its numbers would change)
    since: int = 1               # the first checkpoint format that records it; an older
    absent: Any = None           # checkpoint lacks it, and every run it holds had `absent`

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


# Upper bounds of the sizes and counts. Each is beyond what any real machine could use (10⁶
# hidden units make a network of 10¹² parameters, 4 TB in float32; a batch above the training
# split's 60,000 is the whole split), so no real run's checkpoint is refused and a request
# that cannot fit here still meets the memory check's one line with its estimate; yet no value
# within them overflows an estimate (numpyvae.memory), a shape or a file name.
MAX_EPOCHS = 10**6               # burda2015 trains 3,280
MAX_BATCH = 10**12               # images per batch (and evaluate's --batch)
MAX_UNITS = 10**6                # hidden_dim and latent_dim
MAX_SAMPLES = 10**9              # noise samples L per image (IWAE's largest k is 5,000)
MAX_SEED = 2**64 - 1             # the largest seed torch.manual_seed takes (the reference)
MAX_LIMIT = 10**12               # images; anything above the split's size is the whole split
MAX_X_DIM = 10**6                # pixels per image; checkpoint.py then asks for the dataset's

# In config.json's order. A resumed run keeps every `fixed` setting — the backend too: numba's
# float32 kernels and Adam round differently from NumPy's, and a resumed run promises the
# uninterrupted run's numbers bit for bit.
SETTINGS = (
    Setting("dataset", "mnist", one_of(*DATASETS), "default {default}"),
    Setting("epochs", 20, integer(1, MAX_EPOCHS), "total epochs (default {default})",
            fixed=False),
    Setting("batch_size", 128, integer(1, MAX_BATCH), "default {default}"),
    Setting("hidden_dim", 200, integer(1, MAX_UNITS), "default {default}"),
    Setting("latent_dim", 20, integer(1, MAX_UNITS), "default {default}"),
    Setting("lr", 1e-3, POSITIVE, "Adam learning rate (default {default})"),
    Setting("seed", 0, integer(0, MAX_SEED), "default {default}"),
    Setting("binarize", "threshold", one_of(*BINARIZE_MODES),
            "threshold: round(x/255) (the notebook's, default); dynamic: a fresh Bernoulli(x/255) "
            "draw per batch; none: grey levels"),
    Setting("samples", 1, integer(1, MAX_SAMPLES),
            "noise samples L per image per step (default {default})"),
    Setting("dtype", "float32", one_of(*DTYPES), "default {default}"),
    Setting("backend", DEFAULT_BACKEND, one_of(*BACKENDS),
            "numba: fused kernels (default); numpy: the plain readable path"),
    Setting("limit", 0, integer(0, MAX_LIMIT),
            "use only the first N training and test images, for quick runs (default 0: all)"),
    Setting("x_dim", 784, integer(1, MAX_X_DIM)),        # pixels per image, from the dataset
    Setting("data_dir", None, FOLDER_OR_NULL,
            "where the dataset is looked for and cached (default ~/datasets)", fixed=False),
    Setting("activation", "leaky_relu", one_of(*ACTIVATIONS),
            "the hidden layers' activation (default {default}, slope 0.2)",
            since=2, absent="leaky_relu"),
    Setting("init", "torch", one_of(*INITS),
            "torch: nn.Linear's default (default); glorot: Glorot-uniform weights, zero biases",
            since=2, absent="torch"),
    Setting("output_bias", "init", one_of(*OUTPUT_BIASES),
            "the decoder's output bias: as --init draws it (default), or the logit of the mean "
            "training pixel", since=2, absent="init"),
    Setting("adam_eps", 1e-8, POSITIVE, "Adam's ε (default {default})", since=2, absent=1e-8),
    Setting("lr_schedule", "constant", one_of(*LR_SCHEDULES),
            "constant (default), or burda: 3^i epochs at lr·10^(-i/7), i = 0…7",
            since=2, absent="constant"),
    Setting("holdout", 0, integer(0, MAX_TRAIN_IMAGES - 1),
            "hold out the last N training images and report their −ELBO per epoch "
            "(default {default})", since=2, absent=0),
    # The --preset the run started from: a record only (train's --preset flag sets it).
    Setting("preset", None, text_or_null("a preset's name"), fixed=False, since=2, absent=None),
    # "auto" is resolved to a count when a run starts (train.py); the count is what is recorded.
    Setting("blas_threads", AUTO, BLAS_THREADS,
            "threads of the matrix products: auto (default) times a few steps with each count "
            "and trains with the fastest; or a count. Recorded: a resumed run uses it again",
            since=3, absent=None),
    # What training maximises (numpyvae/oracle/iwae.py): the ELBO, or the importance-weighted
    # bound L_K of the --samples K; its encoder gradient's estimator (iwae only).
    Setting("objective", "elbo", one_of(*OBJECTIVES),
            "elbo: the ELBO with the analytic KL, averaged over the --samples (default); iwae: "
            "the importance-weighted bound L_K of the K = --samples (Burda et al. 2015)",
            since=4, absent="elbo"),
    Setting("estimator", None, ESTIMATOR,
            "with --objective iwae, the encoder's gradient: standard (default; unbiased), stl "
            "(Roeder et al. 2017; less noisy, biased for K > 1) or dreg (Tucker et al. 2019; "
            "unbiased, less noisy)", since=4, absent=None),
)
BY_NAME = {s.name: s for s in SETTINGS}
# --data-dir's type, for every command that takes one: a folder name, made absolute
DATA_DIR_FLAG = BY_NAME["data_dir"].kind.flag

# The run's settings: one field per entry of SETTINGS, with its default.
Config = make_dataclass("Config", [(s.name, Any, field(default=s.default)) for s in SETTINGS])
Config.__doc__ = "A training run's settings (numpyvae.run.config.SETTINGS describes each)."

FIXED_ON_RESUME = tuple(s.name for s in SETTINGS if s.fixed)


def absent_before(version):
    """{setting: value} for the settings a format-`version` checkpoint does not record, each
    the value every run of that format had: format 1 predates the notebook's fixed choices
    (its runs had the notebook's values), format 2 the thread count (the environment's),
    format 3 the objective (the ELBO, no estimator)."""
    return {s.name: s.absent for s in SETTINGS if s.since > version}


FORMAT_1_DEFAULTS = absent_before(1)


def check_value(name, value):
    """None if `value` is valid for setting `name`, else what was expected, in words."""
    kind = BY_NAME[name].kind
    return None if kind.check(value) else kind.expected


# Burda, Grosse & Salakhutdinov (2015), "Importance Weighted Autoencoders", §5 and Table 1: the
# VAE with one stochastic layer of 50 units, k = 1. MNIST dynamically binarized, the last 400
# training images held out; 784-200-200-50 and back with tanh; Glorot-uniform weights, zero
# biases, the decoder's output bias the logit of the mean training pixel; batch 20; Adam with
# β₁ 0.9, β₂ 0.999 and ε 1e-4 as the paper states; 3,280 epochs: 3^i at 1e-3·10^(−i/7).
PRESETS = {
    "burda2015": dict(dataset="mnist", binarize="dynamic", batch_size=20, hidden_dim=200,
                      latent_dim=50, samples=1, activation="tanh", init="glorot",
                      output_bias="data-mean", adam_eps=1e-4, lr=1e-3, lr_schedule="burda",
                      holdout=400, epochs=3280),
}
# The same network and schedule trained on the bound: Table 1's IWAE, one stochastic layer,
# k = 5, with the paper's (standard) gradient.
PRESETS["burda2015-iwae"] = dict(PRESETS["burda2015"], objective="iwae", samples=5,
                                 estimator="standard")
for _preset in PRESETS.values():
    assert all(check_value(k, v) is None for k, v in _preset.items()), _preset


def training_loss(cfg):
    """What a run's training minimises, in words for its lines: "−ELBO", or "−L_K" (the
    importance-weighted bound of its K samples, e.g. "−L_5")."""
    return "−ELBO" if cfg.objective == "elbo" else f"−L_{cfg.samples}"


def training_column(cfg):
    """metrics.csv's name for the training loss: train_neg_elbo, or train_neg_iwae_k<K>. (The
    checkpoint keeps it as history.train_neg_elbo whatever the objective.)"""
    return "train_neg_elbo" if cfg.objective == "elbo" else f"train_neg_iwae_k{cfg.samples}"


def add_flags(parser, names, defaults=False):
    """Add the flags of the named settings to an argparse parser, each with its type or
    choices and its help. defaults=False: each flag defaults to None, so a caller can tell which
    were given (train's --resume); True: to the setting's default."""
    for name in names:
        s = BY_NAME[name]
        parser.add_argument(s.flag, type=s.kind.flag, choices=s.kind.choices,
                            help=s.help.format(default=s.default),
                            default=s.default if defaults else None)
