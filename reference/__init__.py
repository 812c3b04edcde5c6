"""The PyTorch reference of the source notebook's VAE (never imported by numpyvae).

    model.py      the notebook's Model in PyTorch, its −ELBO and log p(x)
    compare.py    how numpyvae's numbers are compared with Torch's (tolerances and why)
    train.py, evaluate.py, gradcheck.py   commands: `python -m reference.<command>`

Each command loads its libraries under numpyvae.run.startup.starting, so a Ctrl-C, SIGTERM or
SIGHUP meanwhile is one line, as for numpyvae's own commands.
"""
