"""The comparison every parity test uses: reference/compare.py (rel_err, the float32 kink
rule, shared with `python -m reference.gradcheck`), and assert_all_close, which reports every
tensor outside its tolerance with its worst element."""
from reference.compare import (KINK_ROUNDOFFS, U32, away_from_kinks, kink_rows,  # noqa: F401
                               rel_err, worst)


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
