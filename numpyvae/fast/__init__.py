"""The fast path: the oracle's mathematics (numpyvae/oracle/) with numba, the same numbers
(float64 ≤ 1e-12 apart, tests/math/test_backends.py), allocating nothing after its first step.

    kernels.py   the elementwise passes around the matrix products, plain Python jitted once
    fused.py     the training step and the log weights on preallocated workspaces; which
                 kernels a dtype and activation use, and the forward products' layout
    adam.py      Adam's update as one pass
    binarize.py  the batch taker as one pass

Imports the oracle (for shared constants) and numpyvae/threads.py, nothing above.
"""
