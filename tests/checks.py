"""The comparison every parity test uses, stated once.

rel_err(ours, ref) = max |ours − ref| / max |ref| over one tensor (the llm.c measure): it
compares by parameter name and reports the worst element, so a bug in a single entry shows.
"""
import numpy as np


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference {ref.shape}"
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(ours - ref)) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def worst(ours, ref):
    """Index, ours and ref at the worst element — for failure messages."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    i = np.unravel_index(np.argmax(np.abs(ours - ref)), ref.shape) if ref.size else ()
    return i, (ours[i] if ref.size else None), (ref[i] if ref.size else None)


def assert_all_close(ours, ref, tol, what=""):
    """ours, ref: {name: array}.  Every tensor within `tol` by rel_err, else a report."""
    assert set(ours) == set(ref), f"{what}: names differ {sorted(set(ours) ^ set(ref))}"
    bad = []
    for name in ref:
        err = rel_err(ours[name], ref[name])
        if not err <= tol:
            i, a, b = worst(ours[name], ref[name])
            bad.append(f"{name}: rel err {err:.3e} > {tol:.0e} (worst at {i}: {a!r} vs {b!r})")
    assert not bad, f"{what}\n" + "\n".join(bad)
