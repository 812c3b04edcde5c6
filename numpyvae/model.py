"""The source notebook's VAE: forward pass, −ELBO, and every gradient by hand.

    encoder   h1 = f(x W_enc1ᵀ + b)            x: (B, D)       h1: (B, H)
              h2 = f(h1 W_enc2ᵀ + b)                           h2: (B, H)
              μ  = h2 W_meanᵀ + b,   v = log σ² = h2 W_stdᵀ + b     (B, Z)
    sample    z  = μ + exp(½ v) ⊙ ε,   ε ~ N(0, I)   (reparameterization, K&W 2014 §2.4)
                                                       ε: (L, B, Z) for L samples per image
    decoder   g1 = f(z W_dec1ᵀ + b),  g2 = f(g1 W_dec2ᵀ + b)                 (L·B, H)
              ℓ  = g2 W_outputᵀ + b,   θ = sigmoid(ℓ)                         (L·B, D)
    loss      −ELBO summed over the batch = 1/L Σ_l Σ_b BCE(x_b, ℓ_lb) + Σ_b KL(q(z|x_b) ‖ N(0, I))

f is the hidden activation: LeakyReLU(0.2) (the notebook's, default) or tanh (Burda et al.
2015); numpyvae/activations.py.

Parameters are named and shaped exactly as the notebook's `Model.state_dict()` (PyTorch's
(out, in) layout), and live as views into one flat buffer so that Adam updates them in a
single pass and a checkpoint is one array.
"""
import numpy as np

from . import backend as backends
from . import linear
from .activations import ACTIVATIONS, check_name
from .loss import bernoulli_nll, bernoulli_nll_grad, gaussian_kl, gaussian_kl_grad

# (name prefix, fan_in attribute, fan_out attribute) in state_dict order.
LAYERS = (
    ("Encoder.FC_enc1", "x_dim", "hidden_dim"),
    ("Encoder.FC_enc2", "hidden_dim", "hidden_dim"),
    ("Encoder.FC_mean", "hidden_dim", "latent_dim"),
    ("Encoder.FC_std", "hidden_dim", "latent_dim"),      # outputs log σ², despite the name
    ("Decoder.FC_dec1", "latent_dim", "hidden_dim"),
    ("Decoder.FC_dec2", "hidden_dim", "hidden_dim"),
    ("Decoder.FC_output", "hidden_dim", "x_dim"),
)


INITS = {"torch": linear.init, "glorot": linear.init_glorot}


def param_shapes(x_dim, hidden_dim, latent_dim):
    """Ordered {state_dict name: shape} of the 14 parameter arrays."""
    dims = {"x_dim": x_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim}
    shapes = {}
    for prefix, fan_in, fan_out in LAYERS:
        shapes[prefix + ".weight"] = (dims[fan_out], dims[fan_in])
        shapes[prefix + ".bias"] = (dims[fan_out],)
    return shapes


def views(flat, shapes):
    """Split a flat buffer into named views with the given shapes (no copies)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    if start != flat.size:
        raise ValueError(f"flat buffer holds {flat.size} numbers, the shapes need {start}")
    return out


def _as_eps3(eps, batch, latent_dim, dtype):
    """Noise as (L, B, Z); a (B, Z) array is one sample."""
    eps = np.asarray(eps, dtype=dtype)
    if eps.ndim == 2:
        eps = eps[None]                                  # (1, B, Z)
    if eps.ndim != 3 or eps.shape[1:] != (batch, latent_dim):
        raise ValueError(f"eps must have shape (B, Z) = ({batch}, {latent_dim}) or "
                         f"(L, {batch}, {latent_dim}); got {eps.shape}")
    return eps


def encode(params, x, activation="leaky_relu"):
    """μ and log σ² of q(z|x), plus the encoder activations.  x: (B, D)."""
    p, f = params, ACTIVATIONS[activation][0]
    a1 = linear.forward(x, p["Encoder.FC_enc1.weight"], p["Encoder.FC_enc1.bias"])   # (B, H)
    h1 = f(a1)                                                                       # (B, H)
    a2 = linear.forward(h1, p["Encoder.FC_enc2.weight"], p["Encoder.FC_enc2.bias"])  # (B, H)
    h2 = f(a2)                                                                       # (B, H)
    mu = linear.forward(h2, p["Encoder.FC_mean.weight"], p["Encoder.FC_mean.bias"])  # (B, Z)
    logvar = linear.forward(h2, p["Encoder.FC_std.weight"], p["Encoder.FC_std.bias"])  # (B, Z)
    return mu, logvar, (a1, h1, a2, h2)


def decode_logits(params, z, activation="leaky_relu"):
    """Decoder logits ℓ for latent codes z: (N, Z) -> (N, D), plus the activations."""
    p, f = params, ACTIVATIONS[activation][0]
    c1 = linear.forward(z, p["Decoder.FC_dec1.weight"], p["Decoder.FC_dec1.bias"])   # (N, H)
    g1 = f(c1)                                                                       # (N, H)
    c2 = linear.forward(g1, p["Decoder.FC_dec2.weight"], p["Decoder.FC_dec2.bias"])  # (N, H)
    g2 = f(c2)                                                                       # (N, H)
    logits = linear.forward(g2, p["Decoder.FC_output.weight"], p["Decoder.FC_output.bias"])  # (N, D)
    return logits, (c1, g1, c2, g2)


def forward(params, x, eps, activation="leaky_relu"):
    """−ELBO of a batch, summed over its images, in nats.

    x: (B, D) in [0, 1];  eps: (B, Z) or (L, B, Z);  activation: a name in ACTIVATIONS.
    Returns (loss, cache); cache holds the intermediates (μ, log σ², z, logits, …) and the
    two parts of the loss, `recon` and `kl`, also summed over the batch.
    """
    B, D = x.shape
    mu, logvar, enc = encode(params, x, activation)     # (B, Z), (B, Z)
    eps = _as_eps3(eps, B, mu.shape[1], mu.dtype)       # (L, B, Z)
    L, _, Z = eps.shape
    sigma = np.exp(0.5 * logvar)                        # (B, Z)
    z = mu + sigma * eps                                # (L, B, Z)
    logits, dec = decode_logits(params, z.reshape(L * B, Z), activation)   # (L·B, D)
    logits3 = logits.reshape(L, B, D)                   # (L, B, D)
    # Monte-Carlo estimate of E_q[−log p(x|z)]: 1/L Σ_l (K&W 2014, eq. 7); KL analytic (App. B).
    recon = bernoulli_nll(logits3, x).sum() / L
    kl = gaussian_kl(mu, logvar).sum()
    loss = recon + kl
    cache = dict(x=x, eps=eps, mu=mu, logvar=logvar, sigma=sigma, z=z, logits=logits,
                 enc=enc, dec=dec, activation=activation, recon=float(recon), kl=float(kl))
    return float(loss), cache


def backward(params, cache, grads):
    """Every gradient of forward's loss, written into `grads` (dict keyed like params)."""
    p, g, df = params, grads, ACTIVATIONS[cache["activation"]][1]
    x, eps, mu, logvar, sigma, z = (cache[k] for k in ("x", "eps", "mu", "logvar", "sigma", "z"))
    a1, h1, a2, h2 = cache["enc"]
    c1, g1, c2, g2 = cache["dec"]
    L, B, Z = eps.shape
    D = x.shape[1]
    # reconstruction term, 1/L Σ_l BCE(x, ℓ_l):  ∂/∂ℓ = (sigmoid(ℓ) − x) / L
    dlogits = bernoulli_nll_grad(cache["logits"].reshape(L, B, D), x)        # (L, B, D)
    if L > 1:
        dlogits *= dlogits.dtype.type(1.0 / L)
    dlogits = dlogits.reshape(L * B, D)                                     # (L·B, D)
    # decoder
    dg2 = linear.backward(dlogits, g2, p["Decoder.FC_output.weight"],
                          g["Decoder.FC_output.weight"], g["Decoder.FC_output.bias"])   # (L·B, H)
    dc2 = df(dg2, c2, g2)                                                               # (L·B, H)
    dg1 = linear.backward(dc2, g1, p["Decoder.FC_dec2.weight"],
                          g["Decoder.FC_dec2.weight"], g["Decoder.FC_dec2.bias"])       # (L·B, H)
    dc1 = df(dg1, c1, g1)                                                               # (L·B, H)
    dz = linear.backward(dc1, z.reshape(L * B, Z), p["Decoder.FC_dec1.weight"],
                         g["Decoder.FC_dec1.weight"], g["Decoder.FC_dec1.bias"])        # (L·B, Z)
    dz = dz.reshape(L, B, Z)                                                            # (L, B, Z)
    # reparameterization z = μ + exp(½v) ε:  ∂z/∂μ = 1,  ∂z/∂v = ½ σ ε;  plus the KL's own terms
    dkl_dmu, dkl_dlogvar = gaussian_kl_grad(mu, logvar)                                 # (B, Z)
    dmu = dz.sum(axis=0) + dkl_dmu                                                      # (B, Z)
    dlogvar = (dz * eps).sum(axis=0) * (0.5 * sigma) + dkl_dlogvar                      # (B, Z)
    # encoder
    dh2 = linear.backward(dmu, h2, p["Encoder.FC_mean.weight"],
                          g["Encoder.FC_mean.weight"], g["Encoder.FC_mean.bias"])       # (B, H)
    dh2 += linear.backward(dlogvar, h2, p["Encoder.FC_std.weight"],
                           g["Encoder.FC_std.weight"], g["Encoder.FC_std.bias"])        # (B, H)
    da2 = df(dh2, a2, h2)                                                               # (B, H)
    dh1 = linear.backward(da2, h1, p["Encoder.FC_enc2.weight"],
                          g["Encoder.FC_enc2.weight"], g["Encoder.FC_enc2.bias"])       # (B, H)
    da1 = df(dh1, a1, h1)                                                               # (B, H)
    linear.backward(da1, x, p["Encoder.FC_enc1.weight"],
                    g["Encoder.FC_enc1.weight"], g["Encoder.FC_enc1.bias"], need_dx=False)
    return grads


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

    backend: "numba" (default; the fused step of numpyvae/fused.py) or "numpy" (the functions
    above, the readable oracle, the same numbers up to rounding) for `loss_and_grads`, and
    through numpyvae.likelihood for the importance-weighted log-likelihood; numpyvae/backend.py
    says which piece each path uses. `forward`, `backward`, `encode` and `decode_logits` are
    NumPy with either.
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

    def loss_and_grads(self, x, eps, out=None):
        """−ELBO summed over the batch (nats; mean over the L noise samples) and its gradients.

        x: (B, x_dim) in [0, 1];  eps: (B, latent_dim) or (L, B, latent_dim).
        grads is keyed exactly like `params`; pass `out` (e.g. `new_grads()[1]`) to reuse
        a buffer, else a new one is returned.
        """
        if self._step is None:
            self._step = backends.training_step(self)
        x = self.as_input(x)
        eps = _as_eps3(eps, x.shape[0], self.latent_dim, self.dtype)       # (L, B, Z)
        if out is None:
            out = self.new_grads()[1]
        return float(self._step(x, eps, out)), out

    def train_step(self, x, eps, opt):
        """One training step: `loss_and_grads` then `opt.step` (a numpyvae.Adam over
        `model.flat`); returns the batch's −ELBO sum as a float.

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
        loss, _ = self.loss_and_grads(x, eps, out=grads)
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
        from .activations import sigmoid
        return sigmoid(self.decode_logits(z))
