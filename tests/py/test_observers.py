"""test_observers: the calibration observers (passes/observe.c) against numpy.

Usage: python3 tests/py/test_observers.py /path/to/build/q8c

The observers are run through tests/observe_tool (built next to q8c), which
streams an .npy file through one observer N rows at a time and prints `lo hi`.
Each method is re-implemented here from its description in docs (the comment
at the top of observe.c), with numpy.histogram for the histograms, plain
float64 arithmetic and vectorised searches, and compared on seeded datasets:
uniform, Gaussian, Gaussian with a few far outliers, ReLU-like (half zeros),
a constant, and data with NaN and Inf in it.

What is checked:
  * minmax equals numpy's finite min and max exactly;
  * ma-minmax equals the moving average computed batch by batch in float64;
  * percentile, entropy and mse equal the reference within float rounding.
    entropy and mse are searches for a minimum; where two candidates' scores
    are equal to 1e-9 (so the order of a float sum could decide), any of the
    tied candidates is accepted;
  * clipping: on the outlier data minmax's hi is the outlier, while
    percentile's and entropy's is far below it;
  * histogram results do not depend on the batch size;
  * the notes for NaN/Inf, constant data and data without a finite value.
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32
BINS = 2048
LEVELS = 256
TIE = 1e-9  # relative score difference treated as a tie in the searches

# ---- the reference methods, from their description ----


def finite(x):
    x = np.asarray(x, dtype=F32).ravel()
    return x[np.isfinite(x)].astype(np.float64)


def ref_minmax(x):
    f = finite(x)
    return [(f.min(), f.max())]


def ref_ma_minmax(x, batch, momentum):
    """PyTorch's MovingAverageMinMaxObserver over batches of `batch` rows."""
    lo = hi = None
    for start in range(0, x.shape[0], batch):
        f = finite(x[start : start + batch])
        if f.size == 0:
            continue
        if lo is None:
            lo, hi = f.min(), f.max()
        else:
            lo = lo + momentum * (f.min() - lo)
            hi = hi + momentum * (f.max() - hi)
    return [(lo, hi)]


def histogram(values, lo, hi, bins):
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return counts.astype(np.float64), edges


def ref_percentile(x, p, bins=BINS):
    """hi: upper edge of the first bin where the count from below reaches
    p% of all; lo: lower edge of the first bin where the count from above
    does."""
    f = finite(x)
    if f.min() == f.max():
        return [(f.min(), f.max())]
    counts, edges = histogram(f, f.min(), f.max(), bins)
    target = p / 100.0 * counts.sum()
    from_below = np.cumsum(counts)
    from_above = np.cumsum(counts[::-1])[::-1]
    k_hi = int(np.nonzero(from_below >= target)[0][0])
    k_lo = int(np.nonzero(from_above >= target)[0][-1])
    return [(edges[k_lo], edges[k_hi + 1])]


def smooth(d, eps=1e-4):
    """MXNet's _smooth_distribution: zeros become eps, the others give up as
    much in total; None when that does not leave a distribution."""
    zero = d == 0
    nonzero = int((~zero).sum())
    if nonzero == 0:
        return None
    eps1 = eps * int(zero.sum()) / nonzero
    out = d + eps * zero - eps1 * (~zero)
    if (out <= 0).any():
        return None
    return out


def kl_divergence(h, i, nq):
    """KL(P || Q) when the |x| histogram h is cut after i bins."""
    p = h[:i].copy()
    p[i - 1] += h[i:].sum()
    merged = i // nq
    group = np.minimum(np.arange(i) // merged, nq - 1)  # last group takes the rest
    group_total = np.bincount(group, weights=h[:i], minlength=nq)
    group_nonzero = np.bincount(group, weights=(p != 0).astype(np.float64), minlength=nq)
    q = np.where(p != 0, group_total[group] / np.maximum(group_nonzero[group], 1), 0.0)
    p, q = smooth(p), smooth(q)
    if p is None or q is None:
        return np.inf
    p = p / p.sum()
    q = q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def ref_entropy(x, bins=BINS, levels=LEVELS):
    """TensorRT's threshold search; returns the ranges of every candidate
    whose divergence ties with the smallest."""
    f = finite(x)
    lo, hi = f.min(), f.max()
    if lo == hi:
        return [(lo, hi)]
    # Signed data spends half the levels on each side of 0; data that is
    # never negative (after relu) gets all of them.
    nq = levels if lo >= 0 else levels // 2
    bins = max(bins, nq)
    absmax = max(abs(lo), abs(hi))
    h, _ = histogram(np.abs(f), 0.0, absmax, bins)
    cands = np.arange(nq, bins + 1)
    kl = np.array([kl_divergence(h, i, nq) for i in cands])
    best = kl.min()
    width = absmax / bins
    out = []
    for i in cands[kl <= best + TIE * abs(best)]:
        t = (i + 0.5) * width
        out.append((max(lo, -t), min(hi, t)))
    return out


def ref_mse(x, bins=BINS, levels=LEVELS):
    """The edge pair minimising the expected squared error, all values of a
    bin at its centre; when the data spans 0 the range must too. Returns the
    ranges of every pair within a tie of the minimum."""
    f = finite(x)
    lo, hi = f.min(), f.max()
    if lo == hi:
        return [(lo, hi)]
    counts, edges = histogram(f, lo, hi, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    # left[s]: error of the values below edges[s], clipped up to it.
    left = (np.maximum(edges[:, None] - centres[None, :], 0) ** 2 * counts).sum(axis=1)
    right = (np.maximum(centres[None, :] - edges[:, None], 0) ** 2 * counts).sum(axis=1)
    below = np.concatenate([[0.0], np.cumsum(counts)])  # count below each edge
    s = np.arange(bins + 1)[:, None]
    t = np.arange(bins + 1)[None, :]
    step = (edges[None, :] - edges[:, None]) / (levels - 1)
    err = step**2 / 12 * (below[None, :] - below[:, None]) + left[:, None] + right[None, :]
    ok = t > s
    if lo < 0 < hi:
        ok &= (edges[:, None] <= 0) & (edges[None, :] >= 0)
    err = np.where(ok, err, np.inf)
    best = err.min()
    ss, tt = np.nonzero(err <= best * (1 + TIE))
    return [(edges[a], edges[b]) for a, b in zip(ss, tt)]


# ---- running the C observer ----


def tool_path(q8c):
    return os.path.join(os.path.dirname(os.path.abspath(q8c)), "tests", "observe_tool")


def observe(tool, method, path, batch=1, momentum=None, bins=None, levels=None):
    """Run observe_tool; returns (lo, hi, note, exit status)."""
    cmd = [tool, method, path, "--batch", str(batch)]
    if momentum is not None:
        cmd += ["--momentum", repr(momentum)]
    if bins is not None:
        cmd += ["--bins", str(bins)]
    if levels is not None:
        cmd += ["--levels", str(levels)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr}")
    # %.9g names a float32 exactly once read back as float32.
    lo, hi = (float(F32(v)) for v in proc.stdout.split())
    note = ""
    for line in proc.stderr.splitlines():
        if line.startswith("note: "):
            note = line[len("note: ") :]
    return lo, hi, note, proc.returncode


def matches(got, refs, scale, exact=False):
    """Whether the C range equals one of the reference ranges: exactly, or
    within a few float32 roundings (far less than one bin)."""
    tol = 0.0 if exact else 1e-6 * scale
    for lo, hi in refs:
        rlo, rhi = float(F32(lo)), float(F32(hi))
        if abs(got[0] - rlo) <= tol and abs(got[1] - rhi) <= tol:
            return True
    return False


def describe(refs):
    shown = ", ".join(f"[{float(F32(a)):.9g}, {float(F32(b)):.9g}]" for a, b in refs[:3])
    return shown + (f" (+{len(refs) - 3} more)" if len(refs) > 3 else "")


# ---- datasets ----


def datasets():
    rng = np.random.default_rng(20240611)
    shape = (2000, 16)
    out = {}
    out["uniform"] = rng.uniform(-1.0, 3.0, shape).astype(F32)
    out["gaussian"] = rng.normal(0.5, 2.0, shape).astype(F32)
    g = rng.normal(0.0, 1.0, shape).astype(F32)
    g[17, 3], g[900, 0], g[1500, 9], g[1999, 15] = 250.0, -120.0, 300.0, 280.0
    out["outliers"] = g
    out["relu"] = np.maximum(rng.normal(0.0, 1.0, shape), 0).astype(F32)
    out["constant"] = np.full(shape, 0.75, dtype=F32)
    n = rng.normal(0.0, 1.0, shape).astype(F32)
    n[3, 3] = n[50, 1] = n[700, 7] = np.nan
    n[10, 0] = np.inf
    n[11, 0] = -np.inf
    out["nonfinite"] = n
    return out


def main():
    if len(sys.argv) != 2:
        print("usage: test_observers.py /path/to/q8c", file=sys.stderr)
        return 2
    tool = tool_path(sys.argv[1])
    tally = q8test.Tally()
    if not os.path.exists(tool):
        tally.record("observe_tool", False, f"not found at {tool}")
        return tally.finish()
    root = q8test.tmpdir("q8c-observers-")
    data = datasets()
    paths = {}
    for name, arr in data.items():
        paths[name] = os.path.join(root, name + ".npy")
        np.save(paths[name], arr)

    def case(name, fn):
        try:
            ok, detail = fn()
        except Exception as e:  # one broken case must not hide the others
            ok, detail = False, f"{type(e).__name__}: {e}"
        tally.record(name, ok, detail)

    def compare(name, method, refs, exact=False, **kw):
        arr = data[name]

        def fn():
            lo, hi, _, status = observe(tool, method, paths[name], **kw)
            f = finite(arr)
            scale = max(f.max() - f.min(), abs(f.max()), abs(f.min()), 1e-30)
            ok = status == 0 and matches((lo, hi), refs, scale, exact)
            return ok, f"got [{lo:.9g}, {hi:.9g}], numpy {describe(refs)}"

        case(f"{name}.{method}" + "".join(f".{k}={v}" for k, v in kw.items()), fn)

    # Every method against its reference on every dataset.
    for name, arr in data.items():
        compare(name, "minmax", ref_minmax(arr), exact=True, batch=64)
        compare(name, "ma-minmax", ref_ma_minmax(arr, 64, 0.01), batch=64)
        compare(name, "ma-minmax", ref_ma_minmax(arr, 100, 0.25), batch=100, momentum=0.25)
        compare(name, "percentile:99.99", ref_percentile(arr, 99.99), batch=64)
        compare(name, "percentile:99.9", ref_percentile(arr, 99.9), batch=64)
        compare(name, "entropy", ref_entropy(arr), batch=64)
        compare(name, "mse", ref_mse(arr), batch=64)
    # Other bin and level counts.
    for name in ("gaussian", "outliers"):
        arr = data[name]
        compare(name, "percentile:99", ref_percentile(arr, 99, bins=100), batch=64, bins=100)
        compare(name, "entropy", ref_entropy(arr, bins=512), batch=64, bins=512)
        compare(name, "mse", ref_mse(arr, bins=300, levels=16), batch=64, bins=300, levels=16)

    # Clipping: one far outlier decides minmax but not percentile or entropy.
    def clipping():
        top = float(np.nanmax(data["outliers"]))
        mm = observe(tool, "minmax", paths["outliers"], batch=64)
        pc = observe(tool, "percentile:99.99", paths["outliers"], batch=64)
        en = observe(tool, "entropy", paths["outliers"], batch=64)
        ok = mm[1] == top and pc[1] < 0.1 * top and en[1] < 0.5 * top
        detail = f"outlier {top:g}: hi of minmax {mm[1]:g}, percentile {pc[1]:g}, entropy {en[1]:g}"
        return ok, detail

    case("outliers.clipping", clipping)

    # Batching does not change histogram results (ma-minmax depends on it).
    for method in ("minmax", "percentile:99.9", "entropy", "mse"):
        for name in ("outliers", "nonfinite"):

            def streaming(method=method, name=name):
                got = {b: observe(tool, method, paths[name], batch=b)[:2] for b in (1, 7, 2000)}
                return len(set(got.values())) == 1, f"by batch size: {got}"

            case(f"{name}.{method}.streaming", streaming)

    # Notes.
    def note_nonfinite():
        lo, hi, note, status = observe(tool, "mse", paths["nonfinite"], batch=64)
        want = "3 NaN and 2 Inf values ignored"
        return status == 0 and note == want, f"note {note!r}, want {want!r}"

    def note_constant():
        notes = set()
        for m in ("minmax", "ma-minmax", "percentile:99.9", "entropy", "mse"):
            lo, hi, note, status = observe(tool, m, paths["constant"], batch=64)
            notes.add((lo, hi, note, status))
        want = {(0.75, 0.75, "all values equal 0.75", 0)}
        return notes == want, f"got {notes}"

    def no_finite():
        path = os.path.join(root, "allnan.npy")
        np.save(path, np.array([[np.nan, np.inf], [np.nan, -np.inf]], dtype=F32))
        got = observe(tool, "entropy", path, batch=1)
        want = (0.0, 0.0, "no finite values (2 NaN, 2 Inf)", 3)
        return got == want, f"got {got}, want {want}"

    case("note.nonfinite", note_nonfinite)
    case("note.constant", note_constant)
    case("note.no_finite_values", no_finite)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
