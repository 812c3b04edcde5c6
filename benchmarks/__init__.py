"""Throughput benchmarks: numpyvae vs the PyTorch reference and JAX.

numpyvae is imported first: `python -m benchmarks.<command>` then loads numpy and the rest under
numpyvae's start-up guard, so a Ctrl-C, SIGTERM or SIGHUP is one line, as for numpyvae's own
commands.
"""
import numpyvae  # noqa: F401
