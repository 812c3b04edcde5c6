"""`python -m numpyvae`: the commands, and what each is for."""
import sys

COMMANDS = """\
numpyvae: the variational autoencoder of Kingma & Welling (2014) in NumPy, every gradient by hand.

Commands (each takes --help):
  python -m numpyvae.train      train a VAE into a run folder: checkpoint, metrics, pictures
  python -m numpyvae.evaluate   a run's test −ELBO, log p(x) (importance-weighted) and active units
  python -m numpyvae.sample     images a run generates, or decoded along a line between two

From a checkout of the repository:
  python -m reference.train     the same training in PyTorch (the reference)
  python -m reference.evaluate  a numpyvae run evaluated by the PyTorch reference
  python -m reference.gradcheck every gradient of a configuration or a run against Torch autograd
  python -m benchmarks.throughput, python -m benchmarks.sweep   speed against every peer
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] not in ("-h", "--help"):
        print(f"python -m numpyvae: {argv[0]!r} is not a command; the commands are modules:\n",
              file=sys.stderr)
        print(COMMANDS, file=sys.stderr, end="")
        return 2
    print(COMMANDS, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
