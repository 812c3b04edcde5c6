"""The comparison every parity test uses: reference/compare.py (rel_err, the float32 kink
rule, shared with `python -m reference.gradcheck`), and assert_all_close, which reports every
tensor outside its tolerance with its worst element."""
from reference import compare
from reference.compare import kink_rows, rel_err, worst  # noqa: F401  (kink_rows: for tests)


def away_from_kinks(params, x, eps, most=0.05):
    """x and ε less the images near a LeakyReLU kink (reference/compare.py says why), and at
    most `most` of the batch of them, else the test's data is not what it claims to be."""
    kept_x, kept_eps, dropped = compare.away_from_kinks(params, x, eps)
    assert len(kept_x) and dropped <= most * len(x) + 1, \
        f"{dropped} of {len(x)} images have a pre-activation near a kink"
    return kept_x, kept_eps


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
