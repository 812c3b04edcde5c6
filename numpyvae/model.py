"""The VAE a user holds: its parameters, and a step on the path its backend names.

    import numpyvae as nv
    model = nv.VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
    loss, grads = model.loss_and_grads(x, eps)

The mathematics is the oracle's (numpyvae/oracle/network.py: `forward`, `backward`, `encode`,
`decode_logits`, `param_shapes`, `views`, named here too, so `nv.model.forward` is the
oracle's); the fast path is numpyvae/fast/fused.py; numpyvae/backend.py chooses between them.
"""
import numpy as np

from . import backend as backends
from .oracle.activations import check_name, sigmoid
from .oracle.iwae import check_objective
from .oracle.network import (INITS, LAYERS, as_eps3, backward, decode_logits, encode, forward,
                             param_shapes, views)

__all__ = ["VAE", "INITS", "LAYERS", "param_shapes", "views", "encode", "decode_logits",
           "forward", "backward"]


class VAE:
    """The notebook's VAE with hand-written gradients.

        model = VAE(x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0)
        model.params                        # {state_dict name: array}, Torch layout
        loss, grads = model.loss_and_grads(x, eps)
        loss = model.train_step(x, eps, opt)   # the same, then opt.step (opt: numpyvae.Adam)

    `params` are views into `model.flat`; assigning through them (`params[k][...] = v`)
    changes the model.  Initialisation (`init`) follows torch.nn.Linear's default distribution
    ("torch") or Glorot-uniform weights with zero biases ("glorot", Burda et al. 2015's), drawn
    from numpy.random.default_rng(seed) layer by layer (weight, then bias).
    activation: the hidden layers' "leaky_relu" (slope 0.2, the notebook's) or "tanh".

    backend: "numba" (default; the fused step of numpyvae/fast/fused.py) or "numpy" (the
    oracle's functions, numpyvae/oracle/network.py, the same numbers up to rounding) for
    `loss_and_grads`, and through numpyvae.likelihood for the importance-weighted
    log-likelihood; numpyvae/backend.py says which piece each path uses. `forward`,
    `backward`, `encode` and `decode_logits` are the oracle's with either.
    """

    def __init__(self, x_dim=784, hidden_dim=200, latent_dim=20, dtype="float32", seed=0,
                 backend=backends.DEFAULT, activation="leaky_relu", init="torch"):
        backends.check(backend)
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
        self.backend = backend
        self.activation = check_name(activation)
        self.init = init
        self._step = None                        # backend.training_step(self), made on first use
        self._other_steps = {}                   # (objective, estimator) -> the same, for iwae
        self._step_grads = None                  # train_step's gradient buffer (flat, views)
        for name, value in (("x_dim", x_dim), ("hidden_dim", hidden_dim),
                            ("latent_dim", latent_dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.x_dim, self.hidden_dim, self.latent_dim = int(x_dim), int(hidden_dim), int(latent_dim)
        self.shapes = param_shapes(self.x_dim, self.hidden_dim, self.latent_dim)
        self.flat = np.empty(sum(int(np.prod(s)) for s in self.shapes.values()), self.dtype)
        self.params = views(self.flat, self.shapes)
        rng = np.random.default_rng(seed)
        for prefix, fan_in, fan_out in LAYERS:
            W, b = INITS[init](getattr(self, fan_in), getattr(self, fan_out), rng, self.dtype)
            self.params[prefix + ".weight"][...] = W
            self.params[prefix + ".bias"][...] = b

    @property
    def num_params(self):
        return self.flat.size

    def new_grads(self):
        """A zeroed flat gradient buffer and its named views, laid out like `flat`/`params`."""
        flat = np.zeros_like(self.flat)
        return flat, views(flat, self.shapes)

    def load_params(self, params):
        """Copy arrays keyed by state_dict name into the model (all 14, shapes checked)."""
        missing = set(self.shapes) - set(params)
        extra = set(params) - set(self.shapes)
        if missing or extra:
            raise ValueError(f"parameter names differ: missing {sorted(missing)}, "
                             f"unexpected {sorted(extra)}")
        for name, shape in self.shapes.items():
            value = np.asarray(params[name])
            if value.shape != shape:
                raise ValueError(f"{name}: shape {value.shape}, expected {shape}")
            self.params[name][...] = value

    def as_input(self, x):
        """x as a (B, x_dim) array of the model's dtype (no copy when it already is one)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.x_dim:
            raise ValueError(f"x must have shape (B, {self.x_dim}); got {x.shape}")
        return x.astype(self.dtype, copy=False)

    def forward(self, x, eps):
        """(loss, cache): −ELBO summed over the batch and the intermediates; see `forward`."""
        return forward(self.params, self.as_input(x), eps, self.activation)

    def backward(self, cache, out=None):
        """Gradients of the loss computed by `forward`, into `out` (a dict of views) or fresh."""
        if out is None:
            out = self.new_grads()[1]
        return backward(self.params, cache, out)

    def loss_and_grads(self, x, eps, out=None, objective="elbo", estimator=None):
        """The loss summed over the batch (nats) and its gradients.

        x: (B, x_dim) in [0, 1];  eps: (B, latent_dim) or (L, B, latent_dim).
        objective "elbo" (the default): −ELBO, the mean over the L noise samples with the
        analytic KL. "iwae": −L_K, the importance-weighted bound of the K = L samples, its
        encoder's gradient by `estimator`, "standard" (default), "stl" or "dreg"
        (numpyvae/oracle/iwae.py).
        grads is keyed exactly like `params`; pass `out` (e.g. `new_grads()[1]`) to reuse
        a buffer, else a new one is returned.
        """
        step = self._training_step(objective, estimator)
        x = self.as_input(x)
        eps = as_eps3(eps, x.shape[0], self.latent_dim, self.dtype)       # (L, B, Z)
        if out is None:
            out = self.new_grads()[1]
        return float(step(x, eps, out)), out

    def _training_step(self, objective, estimator):
        """The backend's step for the objective, made on first use and kept."""
        if objective == "elbo" and estimator is None:
            if self._step is None:
                self._step = backends.training_step(self)
            return self._step
        key = check_objective(objective, estimator)
        if key not in self._other_steps:
            self._other_steps[key] = backends.training_step(self, *key)
        return self._other_steps[key]

    def train_step(self, x, eps, opt, objective="elbo", estimator=None):
        """One training step: `loss_and_grads` then `opt.step` (a numpyvae.Adam over
        `model.flat`); returns the batch's loss sum as a float.

        Leaves exactly the parameters, bit for bit, that
            loss, _ = model.loss_and_grads(x, eps, out=grads); opt.step(model.flat, gflat)
        leaves with the same backend. Raises FloatingPointError when the loss is not finite
        (the update has then been made, as the two calls make it). The gradients are not
        checked with a pass of their own: a gradient that is ±inf or NaN makes Adam's update
        of that parameter NaN (inf/inf), and a NaN parameter makes the next step's loss NaN.
        """
        if self._step_grads is None:
            self._step_grads = self.new_grads()
        gflat, grads = self._step_grads
        loss, _ = self.loss_and_grads(x, eps, out=grads, objective=objective,
                                      estimator=estimator)
        opt.step(self.flat, gflat)
        if not np.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        return loss

    def encode(self, x):
        """(μ, log σ²) of q(z|x), each (B, latent_dim)."""
        mu, logvar, _ = encode(self.params, self.as_input(x), self.activation)
        return mu, logvar

    def decode_logits(self, z):
        """Decoder logits (N, x_dim) for latent codes z (N, latent_dim)."""
        return decode_logits(self.params, np.asarray(z, dtype=self.dtype), self.activation)[0]

    def decode(self, z):
        """Bernoulli means θ = sigmoid(logits), (N, x_dim)."""
        return sigmoid(self.decode_logits(z))
