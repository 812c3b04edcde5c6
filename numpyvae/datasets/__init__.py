"""The data sets' files: MNIST and Fashion-MNIST.

    idx.py     the IDX format: bytes or a path in, checked arrays out
    fetch.py   where the files come from, their SHA-256, the verified cache

No command-line code: errors are numpyvae.errors.DataError and IDXError, with messages for a
person; numpyvae.data.load turns the files into arrays.
"""
