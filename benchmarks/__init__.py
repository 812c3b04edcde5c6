"""Throughput benchmarks: numpyvae vs the PyTorch reference."""
