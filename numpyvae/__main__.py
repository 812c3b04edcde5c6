"""`numpyvae COMMAND …` (the console script pip installs) and `python -m numpyvae COMMAND …`:
the package's commands by name; with no command, or --help, the list of them.

    numpyvae train --epochs 5          # the same as python -m numpyvae.train --epochs 5
"""
import importlib
import os
import sys

from .run.cli import Terminal            # the standard library only: prints on any terminal
from .run.startup import starting

# Each command is the module numpyvae.<name> with main(argv, prog=…), prog the command as typed
# (its usage says `numpyvae train`, not `python -m numpyvae.train`); train's also takes cli=True.
SUBCOMMANDS = ("train", "evaluate", "sample")

COMMANDS = """\
numpyvae: the variational autoencoder of Kingma & Welling (2014) in NumPy, every gradient by hand.

usage: numpyvae COMMAND [flags]     (or python -m numpyvae COMMAND, python -m numpyvae.COMMAND)

Commands (each takes --help):
  numpyvae train       train a VAE into a run folder: checkpoint, metrics, pictures
  numpyvae evaluate    a run's test −ELBO, log p(x) (importance-weighted) and active units
  numpyvae sample      images a run generates, or decoded along a line between two

From a checkout of the repository:
  python -m reference.train     the same training in PyTorch (the reference)
  python -m reference.evaluate  a numpyvae run evaluated by the PyTorch reference
  python -m reference.gradcheck every gradient of a configuration or a run against Torch autograd
  python -m benchmarks.throughput, python -m benchmarks.sweep   speed against every peer
"""


def main(argv=None):
    """The command named by argv[0] (sys.argv[1:] when None: this is the program) with the rest;
    returns its exit status."""
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    typed = ("python -m numpyvae" if not command_line
             or os.path.basename(sys.argv[0]) == "__main__.py" else "numpyvae")
    if not argv or argv[0] in ("-h", "--help"):
        Terminal(sys.stdout).write(COMMANDS)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        Terminal(sys.stderr).write(f"numpyvae: {name!r} is not a command; the commands are "
                                   f"{', '.join(SUBCOMMANDS)}\n\n{COMMANDS}")
        return 2
    with starting(command_line):        # the program: a signal while the command loads is one line
        command = importlib.import_module(f"numpyvae.{name}")
    if name == "train":
        return command.main(rest, cli=True, prog=f"{typed} {name}")
    return command.main(rest, prog=f"{typed} {name}")


if __name__ == "__main__":
    sys.exit(main())
