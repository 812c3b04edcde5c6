"""The PyTorch reference of the source notebook's VAE (never imported by numpyvae).

numpyvae is imported first: `python -m reference.<command>` then loads numpy and the rest under
numpyvae's start-up guard, so a Ctrl-C or SIGTERM meanwhile is one line, as for numpyvae's own
commands.
"""
import numpyvae  # noqa: F401
