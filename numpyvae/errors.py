"""Every error type of numpyvae, in one place that imports nothing of the package.

Each carries a message written for a person: what was found, where (the file, folder or flag),
and what to do. A command turns each into one line and its exit status (numpyvae/run/cli.py,
`run_command`).

    UsageError        a request that cannot be carried out as asked              exit 2
    DataError         the data set cannot be had, or its files are bad            exit 1
    SourceError       one source of the data failed (one line of DataError's list)
    IDXError          an IDX file (or its gzip stream) is not what it should be
    CheckpointError   a checkpoint that cannot be used                            exit 1
    RunLocked         the run folder is another process's (or cannot be locked)   exit 1
    NonFinite         a loss or parameter stopped being finite (train)            exit 3
"""


class UsageError(Exception):
    """A request that cannot be carried out as asked; the message says what to change."""


class DataError(Exception):
    """The data could not be loaded; str(err) says why and what to do, for a person to read."""


class SourceError(Exception):
    """One source could not provide a file; the message is one line, for DataError's list."""


class IDXError(ValueError):
    """An IDX file (or gzip stream) that is not what it should be; the message names it."""


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class RunLocked(Exception):
    """The folder is another process's run (or cannot be locked); the message says which."""


class NonFinite(Exception):
    """A loss or parameter stopped being finite: training stops, the last checkpoint is kept."""
