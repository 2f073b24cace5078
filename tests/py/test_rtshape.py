"""test_rtshape: a run-time batch (docs/ir.md, "Run-time batch").

Usage: python3 tests/py/test_rtshape.py /path/to/q8c

One library, compiled without --batch, serves batch 1, 7 and 397 of the same
model: an MLP with a bias broadcast, layernorm, gelu and softmax over the last
axis, quantized statically (qgemm: one kernel over every batch row, its M at
run time) and dynamically (qlinear_dyn: each row quantized, then the same).
For each, on avx2 and generic, through the .so (`q8c run`) and the JIT
(`q8c run --jit`):

  * every output is byte-identical to the reference interpreter's at that
    batch, and every row to the one the library gives for that row alone
    (batch 1) and for the first 7 rows (batch 7);
  * the quantized entry likewise against the interpreter's quantized run;
  * a library compiled with --batch 7 gives the same bytes at batch 7 and
    refuses 4 rows, as before;
  * the run call's errors, exact: a zero batch, a batch above --max-batch, a
    wrong inner dim;
  * `q8c info` shows the `?` dims and the batch range;
  * the AArch64 variants under qemu-user (run_model --batch) at every batch
    from 1 to 9 and at 37 (qgemm with a run-time M there too: every tail of
    every tile height), when the cross toolchain and qemu are installed;
  * dynamic layers at a run-time M (qlinear_dyn: every batch row's rows
    quantized, then one kernel over batch x rows): a model on f32[?, 24] at
    every batch from 1 to 9 (M below, at and past a tile of any height up to
    8) and one on f32[?, 11, 24] (11 rows per batch row, prime to every tile
    height, so M = 11 b leaves every tail) at batches 1 to 8, 13 and 40:
    every output the interpreter's bytes, and a batch row run alone the same
    bytes; the second also on the AArch64 variants under qemu-user.
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402


def run(q8c, *args, check=True, env=None):
    """q8test.run with extra environment variables."""
    cmd = [str(q8c)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        raise RuntimeError("%s exited with %d\n%s" % (" ".join(cmd), proc.returncode, proc.stderr))
    return proc


F32 = np.float32
Q8C = os.path.abspath(sys.argv[1])
ISAS = ["avx2", "generic"]

MODEL = """model rts {
  weights "rts.safetensors"
  input %x : f32[?, 24]
  %h = linear %x, @fc1.weight, @fc1.bias
  %n = layernorm %h, @ln.weight, @ln.bias
  %g = gelu %n
  %b = add %g, @shift
  %y = linear %b, @fc2.weight, @fc2.bias
  %p = softmax %y {axis = -1}
  output %p, %y
}
"""


def setup(d, rng):
    tensors = {
        "fc1.weight": rng.standard_normal((40, 24)).astype(F32) * F32(0.3),
        "fc1.bias": rng.standard_normal(40).astype(F32) * F32(0.1),
        "ln.weight": (1 + rng.standard_normal(40) * 0.1).astype(F32),
        "ln.bias": rng.standard_normal(40).astype(F32) * F32(0.1),
        "shift": rng.standard_normal((1, 40)).astype(F32) * F32(0.2),
        "fc2.weight": rng.standard_normal((11, 40)).astype(F32) * F32(0.3),
        "fc2.bias": rng.standard_normal(11).astype(F32) * F32(0.1),
    }
    q8test.write_safetensors(os.path.join(d, "rts.safetensors"), tensors)
    with open(os.path.join(d, "rts.ir"), "w") as f:
        f.write(MODEL)
    np.save(os.path.join(d, "calib.npy"), rng.standard_normal((64, 24)).astype(F32))


def run_model(d, model, x, *extra, env=None):
    """Outputs of `q8c run MODEL` on x: (p, y), or the CompletedProcess on failure."""
    xp, pp, yp = (os.path.join(d, n) for n in ("in.npy", "p.npy", "y.npy"))
    np.save(xp, x)
    r = run(Q8C, "run", model, "-i", "x=" + xp, "-o", "p=" + pp, "-o", "y=" + yp, *extra,
            check=False, env=env)
    if r.returncode != 0:
        return r
    return np.load(pp), np.load(yp)


def same(a, b):
    return (not hasattr(a, "returncode") and not hasattr(b, "returncode") and
            all(u.shape == v.shape and u.dtype == v.dtype and u.tobytes() == v.tobytes()
                for u, v in zip(a, b)))


def why(a):
    return a.stderr if hasattr(a, "returncode") else ""


def check_scheme(t, d, scheme, qargs, x):
    q = os.path.join(d, scheme + ".ir")
    run(Q8C, os.path.join(d, "rts.ir"), *qargs, "-o", q)
    so = os.path.join(d, scheme + ".so")
    run(Q8C, q, "--target=" + ",".join(ISAS), "-o", so)
    info = run(Q8C, "info", so).stdout
    t.check("%s: info shows the ? dims and the batch" % scheme,
            "input: x f32[?, 24]" in info and "output: p f32[?, 11]" in info and
            "batch: any, at each call" in info, info)
    ref = {b: run_model(d, q, x[:b]) for b in (1, 7, 397)}
    for isa in ISAS:
        env = {"Q8_ISA": isa}
        got = {b: run_model(d, so, x[:b], env=env) for b in (1, 7, 397)}
        for b in (1, 7, 397):
            t.check("%s %s .so batch %d: the interpreter's bytes" % (scheme, isa, b),
                    same(got[b], ref[b]), why(got[b]))
        rows_ok = not any(hasattr(v, "returncode") for v in got.values()) and all(
            got[397][i][:7].tobytes() == got[7][i].tobytes() and
            got[397][i][:1].tobytes() == got[1][i].tobytes() for i in range(2))
        last = run_model(d, so, x[396:397], env=env)
        rows_ok = rows_ok and same(last, tuple(o[396:397] for o in got[397]))
        t.check("%s %s: each row the same at batch 1, 7 and 397" % (scheme, isa), rows_ok)
        jit = run_model(d, q, x[:397], "--jit", "--target=" + isa)
        t.check("%s %s JIT batch 397: the interpreter's bytes" % (scheme, isa),
                same(jit, ref[397]), why(jit))
    if scheme == "static":
        # The quantized entry (u8 in and out) at batch 7.
        xq = os.path.join(d, "xq.npy")
        np.save(xq, np.clip(np.rint(x[:7] * 10 + 128), 0, 255).astype(np.uint8))
        outs = []
        for model in (q, so):
            r = run(Q8C, "run", model, "--quantized", "-i", "x=" + xq, "-o",
                    "p=" + os.path.join(d, "pq.npy"), "-o", "y=" + os.path.join(d, "yq.npy"),
                    check=False)
            outs.append(r.stderr if r.returncode else
                        (np.load(os.path.join(d, "pq.npy")).tobytes(),
                         np.load(os.path.join(d, "yq.npy")).tobytes()))
        t.check("%s: the quantized entry at batch 7 gives the interpreter's bytes" % scheme,
                outs[0] == outs[1] and not isinstance(outs[1], str), str(outs))
    return q, so, ref


def check_aarch64(t, d, q, x):
    """The AArch64 variants (a run-time M, as on x86) under qemu-user,
    through run_model --batch: the interpreter's bytes."""
    import test_aarch64 as a64
    reason = a64.why_cannot_run()
    if reason:
        t.skip("aarch64 run-time batch", reason)
        return
    so = os.path.join(d, "a64.so")
    run(Q8C, q, "--target=" + ",".join(a64.ISAS), "-o", so)
    for isa in a64.ISAS:
        for b in list(range(1, 10)) + [37]:
            xp, pp, yp = (os.path.join(d, "a64-%s.npy" % n) for n in ("x", "p", "y"))
            np.save(xp, x[:b])
            ref = run_model(d, q, x[:b])
            cmd = ["qemu-aarch64", "-cpu", "max", "-L", a64.SYSROOT,
                   os.path.join(a64.A64, "run_model"), so, "--batch", str(b), "-i", xp,
                   "-o", pp, "-o", yp]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, Q8_ISA=isa))
            got = r if r.returncode else (np.load(pp), np.load(yp))
            t.check("%s (qemu) batch %d: the interpreter's bytes" % (isa, b), same(got, ref),
                    why(got))


DYN_MODEL = """model rtd {
  weights "rtd.safetensors"
  input %%x : f32[?, %s24]
  %%h = linear %%x, @fc1.weight, @fc1.bias
  %%g = gelu %%h
  %%y = linear %%g, @fc2.weight, @fc2.bias
  output %%y
}
"""

# (rows per batch row, batches)
DYN_CASES = [(1, list(range(1, 10))), (11, list(range(1, 9)) + [13, 40])]


def run_one(d, model, x, *extra, env=None):
    """The output of `q8c run MODEL` on x, or the CompletedProcess on failure."""
    xp, yp = os.path.join(d, "rtd-x.npy"), os.path.join(d, "rtd-y.npy")
    np.save(xp, x)
    r = run(Q8C, "run", model, "-i", "x=" + xp, "-o", "y=" + yp, *extra, check=False, env=env)
    return r if r.returncode != 0 else np.load(yp)


def same_bytes(a, b):
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and
            a.tobytes() == b.tobytes())


def check_dynamic_tails(t, d, rng):
    """qlinear_dyn with a run-time M at every tail of every tile height;
    (quantized model, x, reference outputs by batch) of the 11-row case."""
    q8test.write_safetensors(os.path.join(d, "rtd.safetensors"), {
        "fc1.weight": rng.standard_normal((37, 24)).astype(F32) * F32(0.3),
        "fc1.bias": rng.standard_normal(37).astype(F32) * F32(0.1),
        "fc2.weight": rng.standard_normal((9, 37)).astype(F32) * F32(0.3),
        "fc2.bias": rng.standard_normal(9).astype(F32) * F32(0.1),
    })
    for rows, batches in DYN_CASES:
        name = "rtd%d" % rows
        shape = "" if rows == 1 else "%d, " % rows
        with open(os.path.join(d, name + ".ir"), "w") as f:
            f.write(DYN_MODEL % shape)
        q = os.path.join(d, name + "-dyn.ir")
        run(Q8C, os.path.join(d, name + ".ir"), "--dynamic", "-o", q)
        so = os.path.join(d, name + ".so")
        run(Q8C, q, "--target=" + ",".join(ISAS), "-o", so)
        x = (rng.standard_normal((max(batches),) + ((rows,) if rows > 1 else ()) + (24,)) *
             2).astype(F32)
        ref = {b: run_one(d, q, x[:b]) for b in batches}
        what = "dynamic [?, %s24]" % shape
        for isa in ISAS:
            env = {"Q8_ISA": isa}
            bad = [(b, why(got) or why(ref[b])) for b in batches
                   for got in [run_one(d, so, x[:b], env=env)] if not same_bytes(got, ref[b])]
            t.check("%s %s: the interpreter's bytes at batch %s" %
                    (what, isa, ", ".join(map(str, batches))), not bad, str(bad))
            b = batches[-1]
            last = run_one(d, so, x[b - 1:b], env=env)
            t.check("%s %s: batch row %d alone is row %d of batch %d" % (what, isa, b - 1, b - 1, b),
                    isinstance(ref[b], np.ndarray) and same_bytes(last, ref[b][b - 1:b]),
                    why(last))
    return q, x, ref


def check_dynamic_aarch64(t, d, q, x, ref):
    """The 11-row dynamic model of check_dynamic_tails on the AArch64
    variants under qemu-user at batches 1, 2, 5 and 13."""
    import test_aarch64 as a64
    reason = a64.why_cannot_run()
    if reason:
        t.skip("aarch64 run-time M of dynamic layers", reason)
        return
    so = os.path.join(d, "rtd-a64.so")
    run(Q8C, q, "--target=" + ",".join(a64.ISAS), "-o", so)
    for isa in a64.ISAS:
        bad = []
        for b in (1, 2, 5, 13):
            xp, yp = os.path.join(d, "rtd-a64-x.npy"), os.path.join(d, "rtd-a64-y.npy")
            np.save(xp, x[:b])
            cmd = ["qemu-aarch64", "-cpu", "max", "-L", a64.SYSROOT,
                   os.path.join(a64.A64, "run_model"), so, "--batch", str(b), "-i", xp, "-o", yp]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, Q8_ISA=isa))
            if r.returncode != 0 or not same_bytes(np.load(yp), ref[b]):
                bad.append((b, r.stderr))
        t.check("dynamic [?, 11, 24] %s (qemu): the interpreter's bytes at batch 1, 2, 5, 13"
                % isa, not bad, str(bad))


def main():
    t = q8test.Tally()
    rng = np.random.default_rng(16)
    d = q8test.tmpdir()
    setup(d, rng)
    x = (rng.standard_normal((397, 24)) * 1.5).astype(F32)
    q, so, ref = check_scheme(t, d, "static", ["--calib", os.path.join(d, "calib.npy")], x)
    check_scheme(t, d, "dynamic", ["--dynamic"], x)

    # --batch N is a fixed-shape library, as before.
    b7 = os.path.join(d, "b7.so")
    run(Q8C, q, "--target=avx2", "--batch", "7", "-o", b7)
    t.check("--batch 7: the same bytes at batch 7", same(run_model(d, b7, x[:7]), ref[7]))
    r = run_model(d, b7, x[:4])
    t.check("--batch 7 refuses 4 rows", hasattr(r, "returncode") and r.stderr ==
            "q8c: error: input 'x' is f32[4, 24] but the model was compiled for f32[7, 24] "
            "(recompile with --batch to change the batch size)\n", why(r))
    info = run(Q8C, "info", b7).stdout
    t.check("--batch 7: info shows fixed shapes", "input: x f32[7, 24]" in info and
            "batch:" not in info, info)

    check_aarch64(t, d, q, x)
    qd, xd, refd = check_dynamic_tails(t, d, rng)
    check_dynamic_aarch64(t, d, qd, xd, refd)

    # The run call's errors.
    m8 = os.path.join(d, "m8.so")
    run(Q8C, q, "--target=avx2", "--max-batch", "8", "-o", m8)
    t.check("--max-batch 8: batch 8 runs", same(run_model(d, m8, x[:8]),
                                                 tuple(o[:8] for o in ref[397])))
    cases = [
        (m8, np.zeros((9, 24), F32),
         "%s: error: q8rt_run_dims: input 'x' is [9, 24]: batch 9 is above the model's maximum "
         "8 (--max-batch)\n" % m8),
        (so, np.zeros((0, 24), F32),
         "%s: error: q8rt_run_dims: input 'x' is [0, 24]: the batch must be at least 1\n" % so),
        (so, np.zeros((3, 25), F32),
         "%s: error: q8rt_run_dims: input 'x' is [3, 25] but the model takes [?, 24]\n" % so),
        (so, np.zeros((3, 2, 24), F32),
         "q8c: error: input 'x' is f32[3, 2, 24] but the model takes f32[?, 24]\n"),
    ]
    for model, xbad, msg in cases:
        r = run_model(d, model, xbad)
        t.check("error: " + msg.split("error: ")[-1].strip(),
                hasattr(r, "returncode") and r.returncode == 1 and r.stderr == msg, why(r))
    r = run(Q8C, q, "--batch", "2", "--max-batch", "8", "-o", os.path.join(d, "x.so"), check=False)
    t.check("--max-batch with --batch is a usage error", r.returncode == 2 and
            "--max-batch is for a run-time batch; it cannot be combined with --batch" in r.stderr,
            r.stderr)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
