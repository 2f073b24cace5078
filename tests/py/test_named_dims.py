"""test_named_dims: named symbolic dims (docs/ir.md, "Named dims").

Usage: python3 tests/py/test_named_dims.py /path/to/q8c

A model whose inputs are `f32[B, T, 24]` (a per-token MLP: linears with a
bias, layernorm, gelu, softmax over the last axis; and a second input
`f32[B, T, 1]` multiplied in) is compiled once, without --batch, and runs at
several (B, T): (1, 1), (3, 5), (2, 37) and (1, 97). Quantized statically
(qgemm, its M the B x T rows at run time) and dynamically (qlinear_dyn, per
row). For each, on avx2 and generic, through the .so (`q8c run`) and the JIT
(`q8c run --jit`):

  * every output is byte-identical to the reference interpreter's at that
    shape, and to the interpreter's run of the same model written with `?`
    on the B x T rows flattened (each (b, t) row computed alone);
  * `q8c info` shows the named dims and their ranges;
  * the run call's errors, exact: T = 0, T above --max-dim, B x T above
    --max-batch, an inner dim wrong, B disagreeing between the inputs;
  * the compile-time errors, exact: --batch on a named model, --max-dim of
    an unknown name, named dims not leading a shape, and an attention block
    over [B, T] (Q K^T mixes the rows of T: bind T with --dim T=N), which
    with --dim T=8 is one library for every B (the interpreter's bytes);
  * the AArch64 variants under qemu-user at (B, T) = (1, 1) and (4, 4)
    (run_model --batch N sets every named dim to N).
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32
Q8C = os.path.abspath(sys.argv[1])
ISAS = ["avx2", "generic"]
SHAPES = [(1, 1), (3, 5), (2, 37), (1, 97)]


def run(*args, check=True, env=None):
    cmd = [Q8C] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode != 0:
        raise RuntimeError("%s exited with %d\n%s" % (" ".join(cmd), proc.returncode, proc.stderr))
    return proc


MODEL = """model named {
  weights "nd.safetensors"
  input %x : f32[B, T, 24]
  input %m : f32[B, T, 1]
  %h = linear %x, @fc1.weight, @fc1.bias
  %hm = mul %h, %m
  %n = layernorm %hm, @ln.weight, @ln.bias
  %g = gelu %n
  %y = linear %g, @fc2.weight, @fc2.bias
  %p = softmax %y {axis = -1}
  output %p, %y
}
"""

# The same model on the B x T rows flattened: the meaning named dims have.
FLAT = MODEL.replace("f32[B, T, 24]", "f32[?, 24]").replace("f32[B, T, 1]", "f32[?, 1]")

ATTN = """model attn {
  weights "nd.safetensors"
  input %x : f32[B, T, 24]
  %q = linear %x, @q.weight
  %k = linear %x, @k.weight
  %kt = transpose %k {perm = [0, 2, 1]}
  %s = matmul %q, %kt
  %p = softmax %s {axis = -1, causal = 1}
  %o = matmul %p, %x
  %y = linear %o, @q.weight
  output %y
}
"""


def setup(d, rng):
    tensors = {
        "fc1.weight": rng.standard_normal((40, 24)).astype(F32) * F32(0.3),
        "fc1.bias": rng.standard_normal(40).astype(F32) * F32(0.1),
        "ln.weight": (1 + rng.standard_normal(40) * 0.1).astype(F32),
        "ln.bias": rng.standard_normal(40).astype(F32) * F32(0.1),
        "fc2.weight": rng.standard_normal((11, 40)).astype(F32) * F32(0.3),
        "fc2.bias": rng.standard_normal(11).astype(F32) * F32(0.1),
        "q.weight": rng.standard_normal((16, 24)).astype(F32) * F32(0.3),
        "k.weight": rng.standard_normal((16, 24)).astype(F32) * F32(0.3),
    }
    q8test.write_safetensors(os.path.join(d, "nd.safetensors"), tensors)
    for name, text in (("named", MODEL), ("flat", FLAT), ("attn", ATTN)):
        with open(os.path.join(d, name + ".ir"), "w") as f:
            f.write(text)
    # Calibration: one (b, t) row per sample, [N, 1, 24] (docs/ir.md); the
    # flattened model's are the same rows, [N, 24].
    cx = rng.standard_normal((64, 1, 24)).astype(F32)
    cm = rng.uniform(0.5, 1.5, (64, 1, 1)).astype(F32)
    q8test.write_safetensors(os.path.join(d, "calib.safetensors"), {"x": cx, "m": cm})
    q8test.write_safetensors(os.path.join(d, "calib_flat.safetensors"),
                             {"x": cx.reshape(64, 24), "m": cm.reshape(64, 1)})


def run_model(d, model, x, m, *extra, env=None):
    """(p, y) of `q8c run MODEL`, or the CompletedProcess on failure."""
    xp, mp, pp, yp = (os.path.join(d, n) for n in ("in_x.npy", "in_m.npy", "p.npy", "y.npy"))
    np.save(xp, x)
    np.save(mp, m)
    r = run("run", model, "-i", "x=" + xp, "-i", "m=" + mp, "-o", "p=" + pp, "-o", "y=" + yp,
            *extra, check=False, env=env)
    if r.returncode != 0:
        return r
    return np.load(pp), np.load(yp)


def same(a, b):
    return (not hasattr(a, "returncode") and not hasattr(b, "returncode") and
            all(u.shape == v.shape and u.dtype == v.dtype and u.tobytes() == v.tobytes()
                for u, v in zip(a, b)))


def why(a):
    return a.stderr if hasattr(a, "returncode") else ""


def inputs(rng, b, t):
    x = (rng.standard_normal((b, t, 24)) * 1.5).astype(F32)
    m = rng.uniform(0.5, 1.5, (b, t, 1)).astype(F32)
    return x, m


def check_scheme(t, d, scheme, qargs, qargs_flat, data):
    q = os.path.join(d, scheme + ".ir")
    qf = os.path.join(d, scheme + "_flat.ir")
    run(os.path.join(d, "named.ir"), *qargs, "-o", q)
    run(os.path.join(d, "flat.ir"), *qargs_flat, "-o", qf)
    text = open(q).read()
    t.check("%s: the quantized model prints the named dims" % scheme,
            "input %x : f32[B, T, 24]" in text and "%p : f32[B, T, 11]" in text, text)
    so = os.path.join(d, scheme + ".so")
    run(q, "--target=" + ",".join(ISAS), "-o", so)
    info = run("info", so).stdout
    t.check("%s: info shows the named dims" % scheme,
            "input: x f32[B, T, 24]" in info and "input: m f32[B, T, 1]" in info and
            "output: p f32[B, T, 11]" in info and "dim: B any, at each call" in info and
            "dim: T any, at each call" in info, info)
    ref = {}
    for (b, tt) in SHAPES:
        x, m = data[(b, tt)]
        ref[(b, tt)] = run_model(d, q, x, m)
        flat = run_model(d, qf, x.reshape(b * tt, 24), m.reshape(b * tt, 1))
        t.check("%s (%d, %d): the interpreter's rows are the flattened model's" % (scheme, b, tt),
                not hasattr(flat, "returncode") and not hasattr(ref[(b, tt)], "returncode") and
                all(u.reshape(v.shape).tobytes() == v.tobytes() and u.shape == (b, tt, v.shape[-1])
                    for u, v in zip(ref[(b, tt)], flat)), why(flat) + why(ref[(b, tt)]))
    for isa in ISAS:
        env = {"Q8_ISA": isa}
        for (b, tt) in SHAPES:
            x, m = data[(b, tt)]
            got = run_model(d, so, x, m, env=env)
            t.check("%s %s .so (B, T) = (%d, %d): the interpreter's bytes" % (scheme, isa, b, tt),
                    same(got, ref[(b, tt)]), why(got))
        x, m = data[(2, 37)]
        jit = run_model(d, q, x, m, "--jit", "--target=" + isa)
        t.check("%s %s JIT (2, 37): the interpreter's bytes" % (scheme, isa),
                same(jit, ref[(2, 37)]), why(jit))
    return q, so, ref


def check_aarch64(t, d, q, rng):
    import test_aarch64 as a64
    reason = a64.why_cannot_run()
    if reason:
        t.skip("aarch64 named dims", reason)
        return
    so = os.path.join(d, "a64.so")
    run(q, "--target=" + ",".join(a64.ISAS), "-o", so)
    for isa in a64.ISAS:
        for n in (1, 4):
            x, m = inputs(rng, n, n)
            xp, mp, pp, yp = (os.path.join(d, "a64-%s.npy" % s) for s in ("x", "m", "p", "y"))
            np.save(xp, x)
            np.save(mp, m)
            ref = run_model(d, q, x, m)
            cmd = ["qemu-aarch64", "-cpu", "max", "-L", a64.SYSROOT,
                   os.path.join(a64.A64, "run_model"), so, "--batch", str(n), "-i", xp, "-i", mp,
                   "-o", pp, "-o", yp]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                               env=dict(os.environ, Q8_ISA=isa))
            got = r if r.returncode else (np.load(pp), np.load(yp))
            t.check("%s (qemu) (B, T) = (%d, %d): the interpreter's bytes" % (isa, n, n),
                    same(got, ref), why(got))


def check_errors(t, d, q):
    lim = os.path.join(d, "lim.so")
    run(q, "--target=avx2", "--max-dim", "T=8", "--max-batch", "20", "-o", lim)
    info = run("info", lim).stdout
    t.check("info shows --max-dim and --max-batch",
            "dim: T 1 to 8, at each call" in info and "dim: B any, at each call" in info and
            "batch: 1 to 20, at each call" in info, info)
    z = np.zeros
    cases = [
        (z((2, 0, 24), F32), z((2, 0, 1), F32),
         "q8rt_run_dims: input 'x' is [2, 0, 24]: T must be at least 1"),
        (z((1, 9, 24), F32), z((1, 9, 1), F32),
         "q8rt_run_dims: input 'x' is [1, 9, 24]: T = 9 is above the model's maximum 8 "
         "(--max-dim T=8)"),
        (z((3, 7, 24), F32), z((3, 7, 1), F32),
         "q8rt_run_dims: B = 3, T = 7 make 21 rows, above the model's maximum 20 (--max-batch)"),
        (z((2, 3, 25), F32), z((2, 3, 1), F32),
         "q8rt_run_dims: input 'x' is [2, 3, 25] but the model takes [B, T, 24]"),
        (z((2, 3, 24), F32), z((4, 3, 1), F32),
         "q8rt_run_dims: input 'm' has B = 4 but input 'x' has 2"),
    ]
    for x, m, msg in cases:
        r = run_model(d, lim, x, m)
        want = "%s: error: %s\n" % (lim, msg)
        t.check("error: " + msg, hasattr(r, "returncode") and r.returncode == 1 and
                r.stderr == want, why(r))
    r = run(q, "--batch", "4", "-o", os.path.join(d, "b4.so"), check=False)
    t.check("--batch on named dims is refused", r.returncode != 0 and r.stderr ==
            "%s: error: --batch binds '?', but the model's shapes lead with the named dims B, T: "
            "bind each with --dim NAME=N for fixed shapes, or leave them to each call\n" % q,
            r.stderr)
    r = run(q, "--max-dim", "S=4", "-o", os.path.join(d, "s4.so"), check=False)
    t.check("--max-dim of an unknown name is refused", r.returncode == 2 and
            r.stderr.startswith("q8c: error: --max-dim S: the model has no named dim 'S'\n"),
            r.stderr)
    bad = os.path.join(d, "bad.ir")
    with open(bad, "w") as f:
        f.write(MODEL.replace("input %m : f32[B, T, 1]", "input %m : f32[T, B, 1]"))
    r = run(bad, "--dynamic", "-o", os.path.join(d, "bad.so"), check=False)
    t.check("named dims out of order are refused", r.returncode != 0 and
            "%s:4:18: error: the named dims [B, T] lead every shape that has a symbolic dim, in "
            "that order (a named dim elsewhere, say a KV cache's length, is bound at compile "
            "time: --dim NAME=N)" % bad in r.stderr, r.stderr)


def check_attention(t, d, rng):
    a = os.path.join(d, "attn.ir")
    r = run(a, "--dynamic", "-o", os.path.join(d, "attn_q.ir"), check=False)
    t.check("attention over [B, T]: T must be bound", r.returncode != 0 and
            "%s:6:9: error: transpose %%kt runs along the named dim 'T' (axis 1); the named dims "
            "[B, T] only index independent rows: bind 'T' at compile time with --dim T=N" % a
            in r.stderr, r.stderr)
    aq = os.path.join(d, "attn_q.ir")
    run(a, "--dim", "T=8", "--dynamic", "-o", aq)
    text = open(aq).read()
    t.check("--dim T=8: the model reads [B, 8, 24]", "input %x : f32[B, 8, 24]" in text, text)
    so = os.path.join(d, "attn.so")
    run(aq, "--target=avx2", "-o", so)
    info = run("info", so).stdout
    t.check("--dim T=8: info shows B at each call",
            "input: x f32[B, 8, 24]" in info and "dim: B any, at each call" in info, info)
    ok = True
    for b in (1, 3, 6):
        x = (rng.standard_normal((b, 8, 24))).astype(F32)
        xp, yp1, yp2 = (os.path.join(d, n) for n in ("ax.npy", "ay1.npy", "ay2.npy"))
        np.save(xp, x)
        r1 = run("run", aq, "-i", "x=" + xp, "-o", "y=" + yp1, check=False)
        r2 = run("run", so, "-i", "x=" + xp, "-o", "y=" + yp2, check=False)
        good = r1.returncode == 0 and r2.returncode == 0 and \
            np.load(yp1).tobytes() == np.load(yp2).tobytes() and np.load(yp2).shape == (b, 8, 16)
        t.check("attention, T = 8, B = %d: the interpreter's bytes" % b, good,
                r1.stderr + r2.stderr)
        ok = ok and good
    return ok


def main():
    t = q8test.Tally()
    rng = np.random.default_rng(1616)
    d = q8test.tmpdir()
    setup(d, rng)
    calib, flat_calib = (os.path.join(d, n) for n in ("calib.safetensors",
                                                     "calib_flat.safetensors"))
    data = {s: inputs(rng, *s) for s in SHAPES}
    q, so, ref = check_scheme(t, d, "static", ["--calib", calib], ["--calib", flat_calib], data)
    check_scheme(t, d, "dynamic", ["--dynamic"], ["--dynamic"], data)
    check_errors(t, d, q)
    check_attention(t, d, rng)
    check_aarch64(t, d, q, rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
