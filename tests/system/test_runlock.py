"""numpyvae.run.lock: one writer per run folder.

Oracles: the kernel's own word (a second flock on the file fails while the first is held, and
succeeds once its process is dead); a marker file created with O_EXCL inside the lock, which
two simultaneous holders could not both create.
"""
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from numpyvae.run.lock import LOCK_NAME, RunLock, RunLocked

ROOT = str(Path(__file__).parents[2])


def holder(folder):
    """A process that takes the lock, says so, and waits for its stdin to close."""
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        from numpyvae.run.lock import RunLock
        lock = RunLock({str(folder)!r}).acquire()
        print("locked", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = holder(tmp_path)
    try:
        with pytest.raises(RunLocked, match=f"in use by another numpyvae process \\(PID {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    with RunLock(tmp_path):                    # its holder is done: free again
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(proc.pid)    # left behind
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (tmp_path / LOCK_NAME).exists()


def test_two_locks_in_one_process_exclude_each_other_and_release_cleans_up(tmp_path):
    (tmp_path / "mine.txt").write_text("user's")
    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=str(os.getpid())):
            RunLock(tmp_path).acquire()
    assert sorted(os.listdir(tmp_path)) == ["mine.txt"]


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_NAME).symlink_to(target)
    with pytest.raises(RunLocked, match="remove it or move it out of the way"):
        RunLock(tmp_path / "run").acquire()
    assert not target.exists()


def test_mutual_exclusion_under_contention(tmp_path):
    """4 processes × 100 acquire/release cycles, lock file removed at each release: inside
    the lock each creates `inside` with O_EXCL and removes it — a second simultaneous holder
    would find it there and exit 1."""
    code = textwrap.dedent(f"""
        import os, sys; sys.path.insert(0, {ROOT!r})
        from numpyvae.run.lock import RunLock, RunLocked
        done = 0
        while done < 100:
            try:
                lock = RunLock({str(tmp_path)!r}).acquire()
            except RunLocked:
                continue
            try:
                fd = os.open({str(tmp_path / 'inside')!r}, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                sys.exit(1)
            os.close(fd)
            os.unlink({str(tmp_path / 'inside')!r})
            lock.release()
            done += 1
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    assert os.listdir(tmp_path) == []


def interrupt_after(monkeypatch, module, name, before=False):
    """Make module.name raise KeyboardInterrupt (what a signal does during start-up) right
    after (or instead of) doing its work, once."""
    real = getattr(module, name)

    def interrupted(*args):
        monkeypatch.setattr(module, name, real)
        if not before:
            real(*args)
        raise KeyboardInterrupt
    monkeypatch.setattr(module, name, interrupted)


@pytest.mark.parametrize("module,name,before", [
    (os, "open", False),              # the file created, nothing locked yet
    (fcntl, "flock", True),           # … the same, interrupted as the lock is asked for
    (fcntl, "flock", False),          # locked, before checking that the path names it
    (os, "ftruncate", False),         # locked and checked, the PID not yet written
    (os, "pwrite", False)])           # everything done but returning
def test_release_undoes_an_interrupted_acquire(tmp_path, monkeypatch, module, name, before):
    """A signal can land anywhere in acquire(): release() then removes the file it created
    (and a lock it took), so the folder is as it was, and the next acquire() succeeds."""
    lock = RunLock(tmp_path)
    interrupt_after(monkeypatch, module, name, before)
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
    lock.release()
    assert list(tmp_path.iterdir()) == []
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []


def test_with_block_releases_an_interrupted_acquire(tmp_path, monkeypatch):
    interrupt_after(monkeypatch, os, "ftruncate")
    with pytest.raises(KeyboardInterrupt):
        with RunLock(tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_release_after_an_interrupted_acquire_leaves_another_holders_lock(tmp_path, monkeypatch):
    """Planted error for the test above: interrupted while another process holds the lock,
    release() must not remove that process's file (a third writer is still refused)."""
    proc = holder(tmp_path)
    try:
        lock = RunLock(tmp_path)
        interrupt_after(monkeypatch, fcntl, "flock", before=True)
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()
        lock.release()
        assert (tmp_path / LOCK_NAME).exists()
        with pytest.raises(RunLocked, match=f"PID {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_write_json_waits_for_a_short_writer_not_a_long_one(tmp_path):
    """Oracle: known behaviour — two evaluations of one run finishing together both write
    (the second waits for the first's lock); a folder held longer than `wait` is refused, and
    nothing is written then."""
    import json
    import threading

    from numpyvae.evaluate import write_json
    (tmp_path / "checkpoint.npz").write_bytes(b"")         # a run folder
    holder = RunLock(tmp_path).acquire()
    threading.Timer(0.5, holder.release).start()
    write_json(tmp_path / "a.json", {"log_px": -86.0}, wait=10)
    assert json.loads((tmp_path / "a.json").read_text()) == {"log_px": -86.0}
    with RunLock(tmp_path):
        with pytest.raises(RunLocked):
            write_json(tmp_path / "b.json", {}, wait=0.3)
    assert not (tmp_path / "b.json").exists()
