"""Throughput benchmarks: numpyvae vs the PyTorch reference and JAX.

    machine.py     the CPU, the BLAS kernel and the library versions a figure was taken on
    peers.py       every implementation timed, and the GEMM floor
    throughput.py  the command: one configuration against every peer
    sweep.py       the command: a grid of hidden sizes × batch sizes

Each command loads its libraries under numpyvae.run.startup.starting, so a Ctrl-C, SIGTERM or
SIGHUP meanwhile is one line, as for numpyvae's own commands.
"""
