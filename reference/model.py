"""The source notebook's VAE in PyTorch: the reference numpyvae is checked against.

Same class and layer names as the notebook (`Encoder`, `Decoder`, `Model(Encoder, Decoder)`), so
`Model.state_dict()` keys are `Encoder.FC_enc1.weight` … `Decoder.FC_output.bias` — exactly
numpyvae's parameter names. The hidden activation is the notebook's `LeakyReLU(0.2)` or, with
`activation="tanh"`, `nn.Tanh()` (Burda et al. 2015's), held as `self.LeakyReLU` or `self.Tanh`. The notebook's constructor bugs are fixed (the decoder's
`output_dim` is an argument, `Model` takes `Encoder=`/`Decoder=`), and the noise ε can be passed
in so both implementations see the same sample.
"""
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def pick_device(name=None):
    """The device `name` ("cpu", "cuda", "cuda:1", "mps"), checked to be usable here; without a
    name CUDA, then Apple's MPS, then the CPU — the notebook's order. ValueError says why not."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name is not None:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError("not a device name; use cpu, cuda or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"this torch ({torch.__version__}) sees no CUDA GPU; use cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"there are {torch.cuda.device_count()} CUDA GPUs (cuda:0 …)")
        if device.type in ("cpu", "mps") and device.index not in (None, 0):
            raise ValueError(f"there is one {device.type.upper()} device here ({device.type} "
                             f"or {device.type}:0)")
        if device.type == "mps" and not mps:
            raise ValueError(f"this torch ({torch.__version__}) has no MPS device; use cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError("not a device the reference runs on; use cpu, cuda or mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps:
        return torch.device("mps")
    return torch.device("cpu")


ACTIVATIONS = {"leaky_relu": ("LeakyReLU", lambda: nn.LeakyReLU(0.2)), "tanh": ("Tanh", nn.Tanh)}


def _set_activation(module, activation):
    """module.LeakyReLU = nn.LeakyReLU(0.2) (the notebook's) or module.Tanh = nn.Tanh(); its
    attribute name is kept in module.act_name (a plain string, so the module is held once)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    module.act_name, make = ACTIVATIONS[activation]
    setattr(module, module.act_name, make())


class Encoder(nn.Module):
    def __init__(self, input_dim, hidden_dim, latent_dim, activation="leaky_relu"):
        super().__init__()
        self.FC_enc1 = nn.Linear(input_dim, hidden_dim)
        self.FC_enc2 = nn.Linear(hidden_dim, hidden_dim)
        self.FC_mean = nn.Linear(hidden_dim, latent_dim)
        self.FC_std = nn.Linear(hidden_dim, latent_dim)   # the notebook's name; it gives log σ²
        _set_activation(self, activation)

    def forward(self, x):
        act = getattr(self, self.act_name)
        h = act(self.FC_enc1(x))
        h = act(self.FC_enc2(h))
        return self.FC_mean(h), self.FC_std(h)            # mean, log_var


class Decoder(nn.Module):
    def __init__(self, latent_dim, hidden_dim, output_dim, activation="leaky_relu"):
        super().__init__()
        self.FC_dec1 = nn.Linear(latent_dim, hidden_dim)
        self.FC_dec2 = nn.Linear(hidden_dim, hidden_dim)
        self.FC_output = nn.Linear(hidden_dim, output_dim)
        _set_activation(self, activation)

    def logits(self, z):
        act = getattr(self, self.act_name)
        h = act(self.FC_dec1(z))
        h = act(self.FC_dec2(h))
        return self.FC_output(h)

    def forward(self, z):
        return torch.sigmoid(self.logits(z))              # x_hat, as in the notebook


class Model(nn.Module):
    def __init__(self, Encoder, Decoder):
        super().__init__()
        self.Encoder = Encoder
        self.Decoder = Decoder

    def reparameterization(self, mean, std, eps=None):
        if eps is None:
            eps = torch.randn_like(std)
        return mean + std * eps

    def forward(self, x, eps=None):
        """x_hat, mean, log_var — the notebook's outputs (one sample of z)."""
        mean, log_var = self.Encoder(x)
        z = self.reparameterization(mean, torch.exp(0.5 * log_var), eps)
        return self.Decoder(z), mean, log_var


def build(x_dim=784, hidden_dim=200, latent_dim=20, dtype=torch.float32, device="cpu",
          activation="leaky_relu"):
    return Model(Encoder(x_dim, hidden_dim, latent_dim, activation),
                 Decoder(latent_dim, hidden_dim, x_dim, activation)).to(device=device, dtype=dtype)


def neg_elbo(model, x, eps):
    """−ELBO summed over the batch, with the reconstruction computed from logits.

    x: (B, D); eps: (B, Z) or (L, B, Z).  Returns (loss, parts) where parts holds the
    intermediates (mean, log_var, z, logits) and the two terms `recon` and `kl`.
    The notebook's binary_cross_entropy(sigmoid(ℓ), x) is computed here by
    binary_cross_entropy_with_logits, the same value without its log clamp at −100.
    """
    if eps.dim() == 2:
        eps = eps.unsqueeze(0)                            # (L, B, Z)
    L = eps.shape[0]
    mean, log_var = model.Encoder(x)
    z = model.reparameterization(mean, torch.exp(0.5 * log_var), eps)      # (L, B, Z)
    logits = model.Decoder.logits(z)                                       # (L, B, D)
    recon = F.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="sum") / L
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return recon + kl, dict(mean=mean, log_var=log_var, z=z, logits=logits, recon=recon, kl=kl)


ESTIMATORS = ("standard", "stl", "dreg")


def iwae_log_weights(model, x, z, mean, log_var):
    """s_i = log p(x|z_i) + log p(z_i) − log q(z_i|x) (K, B), float64, for samples z (K, B, Z),
    with q = N(mean, e^{log_var}) — pass them detached for an estimator that drops log q's
    direct dependence on them."""
    logits = model.Decoder.logits(z)                                       # (K, B, D)
    f64 = torch.float64          # each sum in float64, as numpyvae's: in float32 a sum of 784
    log_px = -F.binary_cross_entropy_with_logits(      # terms errs by ~1e-4 nats, and w̃ with it
        logits, x.expand_as(logits), reduction="none").sum(-1, dtype=f64)  # (K, B)
    prior = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    return (log_px + prior.log_prob(z).sum(-1, dtype=f64)
            - posterior.log_prob(z).sum(-1, dtype=f64))


def neg_iwae(model, x, eps, estimator="standard"):
    """−Σ_b L_K (Burda et al. 2015, eq. 8) for x (B, D) and eps (K, B, Z), with every
    parameter's .grad set by autograd as `estimator` says (numpyvae/oracle/iwae.py):
        decoder    the gradient of −L_K itself, for all three
        standard   the encoder's too
        stl        the encoder's of −logsumexp_i s_i with log q's μ, log σ² detached
                   (Roeder et al. 2017)
        dreg       the encoder's of −Σ_i w̃_i² s_i, w̃ = softmax(s) detached, log q's μ, log σ²
                   detached (Tucker et al. 2019)
    Returns the loss (a 0-d tensor, detached). .grad is overwritten, not accumulated."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    K = eps.shape[0]
    mean, log_var = model.Encoder(x)                                       # (B, Z)
    z = model.reparameterization(mean, torch.exp(0.5 * log_var), eps)      # (K, B, Z)
    s = iwae_log_weights(model, x, z, mean, log_var)                       # (K, B)
    loss = -(torch.logsumexp(s, 0) - float(np.log(K))).sum()
    decoder, encoder = list(model.Decoder.parameters()), list(model.Encoder.parameters())
    if estimator == "standard":
        grads = torch.autograd.grad(loss, decoder + encoder)
    else:
        dec = torch.autograd.grad(loss, decoder, retain_graph=True)
        s_path = iwae_log_weights(model, x, z, mean.detach(), log_var.detach())   # (K, B)
        if estimator == "stl":
            surrogate = -torch.logsumexp(s_path, 0).sum()
        else:
            w = torch.softmax(s.detach(), 0)                               # (K, B)
            surrogate = -(w * w * s_path).sum()
        grads = dec + torch.autograd.grad(surrogate, encoder)
    for p, g in zip(decoder + encoder, grads):
        p.grad = g
    return loss.detach()


def state_dict_from_params(params, dtype=None, device="cpu"):
    """numpyvae params -> an OrderedDict Model.load_state_dict(strict=True) accepts."""
    return OrderedDict((name, torch.as_tensor(np.ascontiguousarray(value), dtype=dtype,
                                              device=device).clone())
                       for name, value in params.items())


def params_from_state_dict(state_dict):
    """Model.state_dict() -> numpyvae params ({name: numpy array}, same layout)."""
    return {name: t.detach().cpu().numpy().copy() for name, t in state_dict.items()}


def from_params(params, dtype=torch.float64, device="cpu", activation="leaky_relu"):
    """A reference Model holding numpyvae's parameters (shapes taken from them)."""
    H, D = params["Encoder.FC_enc1.weight"].shape
    Z = params["Encoder.FC_mean.weight"].shape[0]
    model = build(D, H, Z, dtype=dtype, device=device, activation=activation)
    model.load_state_dict(state_dict_from_params(params, dtype, device), strict=True)
    return model


def log_likelihood(model, x, k, rng, rows=5000):
    """L_k per image (float64 numpy (B,)) for x: (B, D) a tensor on the model's device, with
    ε: (S, B, Z) drawn from the numpy Generator `rng` in chunks of S = rows // B samples —
    the order numpyvae.likelihood.log_likelihood draws them in.

    w = log p(x|z) + log p(z) − log q(z|x),  L_k = logsumexp_i w_i − log k."""
    with torch.no_grad():
        B = x.shape[0]
        mean, log_var = model.Encoder(x)                               # (B, Z)
        Z = mean.shape[1]
        sigma = torch.exp(0.5 * log_var)                               # (B, Z)
        c = Z * float(np.log(2 * np.pi))
        total = torch.full((B,), -float("inf"), dtype=torch.float64, device=x.device)
        chunk, done = max(1, rows // B), 0
        np_dtype = np.float32 if x.dtype == torch.float32 else np.float64
        while done < k:
            S = min(chunk, k - done)
            eps = torch.from_numpy(rng.standard_normal((S, B, Z), dtype=np_dtype)).to(x.device)
            z = mean + sigma * eps                                     # (S, B, Z)
            logits = model.Decoder.logits(z)                           # (S, B, D)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").sum(-1, dtype=torch.float64)
            log_pz = -0.5 * (z.pow(2).sum(-1, dtype=torch.float64) + c)
            log_qz = -0.5 * (eps.pow(2).sum(-1, dtype=torch.float64) + c
                             + log_var.sum(-1, dtype=torch.float64))
            total = torch.logaddexp(total, torch.logsumexp(log_px + log_pz - log_qz, 0))
            done += S
        return (total - np.log(k)).cpu().numpy()


def neg_elbo_parts(model, x, eps):
    """(recon, kl) summed over the batch, float64.  x: (B, D), eps: (B, Z) tensors."""
    with torch.no_grad():
        mean, log_var = model.Encoder(x)
        logits = model.Decoder.logits(mean + torch.exp(0.5 * log_var) * eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(
            dtype=torch.float64)
        kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var)).sum(dtype=torch.float64)
        return recon.item(), kl.item()
