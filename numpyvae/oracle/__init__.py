"""The readable oracle: the VAE's mathematics in NumPy, every gradient by hand.

    linear.py       y = x Wᵀ + b and its gradients; torch's and Glorot's initialisations
    activations.py  LeakyReLU(0.2), tanh, the sigmoid
    loss.py         the Bernoulli cross-entropy and the Gaussian KL, with their gradients
    network.py      the VAE's forward pass, −ELBO and backward pass (param_shapes, views)
    adam.py         Adam's rule
    likelihood.py   the importance-weighted bound's log weights; active units
    binarize.py     binarization and the batching primitives

Imports numpy, scipy and itself only: nothing here knows that a backend, a file or a flag
exists. The numba path (numpyvae/fast/) computes the same numbers, and the tests hold it to
these functions.
"""
