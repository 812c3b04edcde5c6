"""The run machinery the commands share (numpyvae.train, .evaluate, .sample, and the
reference's and the benchmarks' commands).

    startup.py     a command's start-up: a signal while its libraries load is one line
    cli.py         flags, the terminal, run_command (every error in one line and its status)
    lock.py        one writer per run folder
    folder.py      the run folder: its files, stale temp files, where outputs may go
    config.py      every setting of a run, written once; the presets
    checkpoint.py  the checkpoint, written atomically, validated when read
    signals.py     SIGINT, SIGTERM and SIGHUP stop a training run with a checkpoint
    memory.py      whether a request fits in this machine's memory
    plots.py       the pictures of a run
    evaluation.py  the random streams, a split's images as the run saw them, the test −ELBO
    probe.py       the forecast of an evaluation and its choice of threads
    results.py     --json results

Nothing of numpyvae below this package imports it.
"""
