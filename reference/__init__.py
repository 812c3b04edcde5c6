"""The PyTorch reference of the source notebook's VAE (never imported by numpyvae)."""
