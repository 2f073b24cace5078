"""test_ops_shape: the transformer shape ops (gather, rmsnorm, concat, slice,
split, transpose at every rank, reshape with -1, softmax over any axis and
causal) against numpy, and compiled code against the interpreter.

Usage: python3 tests/py/test_ops_shape.py /path/to/q8c

1. Each op alone through the f32 interpreter (`q8c run`), and compiled by the
   JIT (which must give the same bytes), against a numpy
   implementation of docs/ir.md: data movement (gather, concat, slice,
   split, transpose, reshape) must be exact, arithmetic (rmsnorm, softmax)
   np.allclose with rtol 1e-5, atol 1e-6 (the interpreter computes in double
   and rounds once, as the reference here does).
2. A small decoder block using all of them, with an integer input of token
   ids: `q8c run --jit` and a .so on every x86_64 variant this CPU runs must
   give the interpreter's bytes, in f32, quantized with --calib (integer
   samples) and with --dynamic.
3. A token id outside the table is an error from every engine, never an
   out-of-bounds read: the interpreter names the id and the input, a compiled
   model's run fails with a message naming the input.
4. A weights file as PyTorch writes it (an unused I64 `num_batches_tracked`,
   an unused F64) loads.
"""
import math
import os
import subprocess
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32
Q8C = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else None


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True, env=e,
                       timeout=300)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)), r.returncode,
                                                       r.stderr))
    return r


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def randn(r, *shape):
    return r.standard_normal(shape).astype(F32)


# ---- the reference semantics (docs/ir.md) ----


def rmsnorm(x, gamma, eps=1e-6):
    x = np.asarray(x, np.float64)
    inv = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)
    return (x * inv * np.asarray(gamma, np.float64)).astype(F32)


def softmax(x, axis=-1, causal=False):
    x = np.asarray(x, np.float64)
    if causal:
        q, k = x.shape[-2], x.shape[-1]
        mask = np.arange(k)[None, :] > np.arange(q)[:, None] + (k - q)
        x = np.where(mask, -np.inf, x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(F32)


# ---- running a model ----


def run_model(d, name, body, inputs, consts, outputs, extra=()):
    """Write model `name` (body between the braces) with its weights and
    inputs into d, run it with `q8c run` and return {output: array}."""
    path = os.path.join(d, name)
    os.makedirs(path, exist_ok=True)
    head = "model t {\n"
    if consts:
        q8test.write_safetensors(os.path.join(path, "w.safetensors"), consts)
        head += '  weights "w.safetensors"\n'
    model = os.path.join(path, "m.ir")
    with open(model, "w") as f:
        f.write(head + body + "}\n")
    args = ["run", model]
    for k, v in inputs.items():
        p = os.path.join(path, "in_%s.npy" % k)
        np.save(p, v)
        args += ["-i", "%s=%s" % (k, p)]
    outs = {o: os.path.join(path, "out_%s.npy" % o) for o in outputs}
    for o, p in outs.items():
        args += ["-o", "%s=%s" % (o, p)]
    q8c(*args, *extra)
    got = {o: np.load(p) for o, p in outs.items()}
    # The same model compiled in memory (as written: `run --jit` does not
    # quantize) must give the interpreter's bytes.
    jit = ["run", model, "--jit"] + [a for a in args[2:] if a != "-o" and a.split("=")[0]
                                     not in outs]
    for o, p in outs.items():
        jit += ["-o", "%s=%s" % (o, p.replace(".npy", "-jit.npy"))]
    q8c(*jit, *extra)
    for o, p in outs.items():
        have = np.load(p.replace(".npy", "-jit.npy"))
        if not same(have, got[o]):
            JIT_DIFFS.append("%s %%%s: %s" % (name, o, why(have, got[o])))
    JIT_CASES.append(name)
    return got


JIT_CASES, JIT_DIFFS = [], []


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def close(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)


def why(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return "got %s%s, want %s%s" % (a.dtype, list(a.shape), b.dtype, list(b.shape))
    return "max |diff| %g" % float(np.max(np.abs(a.astype(np.float64) - b)))


# ---- 1. each op against numpy ----


def test_ops(t, d):
    # gather: i32 and i64 ids of rank 1..3, constant ids
    for dt in ("i32", "i64"):
        for shape in ((7,), (3, 5), (2, 3, 4)):
            name = "gather_%s_rank%d" % (dt, len(shape))
            r = rng_for(name)
            wte = randn(r, 11, 6)
            ids = r.integers(0, 11, shape).astype(np.int32 if dt == "i32" else np.int64)
            dims = ", ".join(["?"] + [str(s) for s in shape[1:]])
            got = run_model(d, name, "  input %%ids : %s[%s]\n  %%y = gather @wte, %%ids\n"
                            "  output %%y\n" % (dt, dims), {"ids": ids}, {"wte": wte}, ["y"])
            t.check(name, same(got["y"], wte[ids]), why(got["y"], wte[ids]))
    r = rng_for("gather_const_ids")
    wte, pos = randn(r, 9, 4), np.array([[8, 0, 3]], np.int64)
    x = randn(r, 3, 4)
    got = run_model(d, "gather_const_ids", "  input %x : f32[3, 4]\n  %p = gather @wte, @pos\n"
                    "  %y = add %x, %p\n  output %y\n", {"x": x}, {"wte": wte, "pos": pos},
                    ["y"])
    want = (x + wte[pos]).astype(F32)
    t.check("gather_const_ids (I64 constant)", same(got["y"], want), why(got["y"], want))

    # rmsnorm with and without eps, at ranks 1..3
    for shape, eps in (((5, 16), None), ((2, 3, 8), 1e-6), ((2, 7), 0.5)):
        name = "rmsnorm_%s_eps%s" % ("x".join(map(str, shape)), eps)
        r = rng_for(name)
        x, g = randn(r, *shape), randn(r, shape[-1])
        dims = ", ".join(["?"] + [str(s) for s in shape[1:]])
        attrs = " {eps = %r}" % eps if eps is not None else ""
        got = run_model(d, name, "  input %%x : f32[%s]\n  %%y = rmsnorm %%x, @g%s\n"
                        "  output %%y\n" % (dims, attrs), {"x": x}, {"g": g}, ["y"])
        want = rmsnorm(x, g, 1e-6 if eps is None else eps)
        t.check(name, close(got["y"], want), why(got["y"], want))

    # concat along every axis, 3 operands, negative axis, i32 data
    for axis in (1, 2, -1, -2):
        name = "concat_axis%d" % axis
        r = rng_for(name)
        shapes = [[2, 3, 4] for _ in range(3)]
        for i, s in enumerate(shapes):
            s[axis] += i
        xs = [randn(r, *s) for s in shapes]
        decl = "".join("  input %%x%d : f32[?, %d, %d]\n" % (i, s[1], s[2])
                       for i, s in enumerate(shapes))
        got = run_model(d, name, decl + "  %%y = concat %%x0, %%x1, %%x2 {axis = %d}\n"
                        "  output %%y\n" % axis, {"x%d" % i: x for i, x in enumerate(xs)}, {},
                        ["y"])
        want = np.concatenate(xs, axis=axis)
        t.check(name, same(got["y"], want), why(got["y"], want))
    r = rng_for("concat_i32")
    a, b = r.integers(-9, 9, (2, 3)).astype(np.int32), r.integers(-9, 9, (2, 2)).astype(np.int32)
    got = run_model(d, "concat_i32", "  input %a : i32[?, 3]\n  input %b : i32[?, 2]\n"
                    "  %y = concat %a, %b\n  output %y\n", {"a": a, "b": b}, {}, ["y"])
    t.check("concat_i32", same(got["y"], np.concatenate([a, b], -1)))

    # slice: numpy's bounds (negative, clamped), every axis, i64 data
    for axis, start, end in ((1, 0, 3), (1, -2, 100), (2, 1, -1), (-1, -100, 2), (3, 2, 3)):
        name = "slice_%d_%d_%d" % (axis, start, end)
        r = rng_for(name)
        x = randn(r, 2, 5, 4, 6)
        got = run_model(d, name, "  input %%x : f32[?, 5, 4, 6]\n  %%y = slice %%x {axis = %d, "
                        "start = %d, end = %d}\n  output %%y\n" % (axis, start, end), {"x": x},
                        {}, ["y"])
        idx = [slice(None)] * 4
        idx[axis] = slice(start, end)
        want = np.ascontiguousarray(x[tuple(idx)])
        t.check(name, same(got["y"], want), why(got["y"], want))
    ids = np.arange(24, dtype=np.int64).reshape(2, 12)
    got = run_model(d, "slice_i64", "  input %ids : i64[?, 12]\n  %y = slice %ids {axis = 1, "
                    "start = 3, end = 7}\n  output %y\n", {"ids": ids}, {}, ["y"])
    t.check("slice_i64", same(got["y"], ids[:, 3:7]))

    # split: equal parts and sizes
    r = rng_for("split")
    x = randn(r, 3, 4, 12)
    got = run_model(d, "split_equal", "  input %x : f32[?, 4, 12]\n"
                    "  %q, %k, %v = split %x {axis = -1}\n  output %q, %k, %v\n", {"x": x}, {},
                    ["q", "k", "v"])
    for o, want in zip("qkv", np.split(x, 3, axis=-1)):
        t.check("split_equal %" + o, same(got[o], np.ascontiguousarray(want)))
    got = run_model(d, "split_sizes", "  input %x : f32[?, 4, 12]\n"
                    "  %a, %b = split %x {axis = 1, sizes = [1, 3]}\n  output %a, %b\n",
                    {"x": x}, {}, ["a", "b"])
    t.check("split_sizes", same(got["a"], np.ascontiguousarray(x[:, :1])) and
            same(got["b"], np.ascontiguousarray(x[:, 1:])))

    # transpose at every rank 1..8, a random permutation each (batch axis
    # kept first), and the default swap
    for rank in range(1, 9):
        name = "transpose_rank%d" % rank
        r = rng_for(name)
        shape = [2] + [int(v) for v in r.integers(1, 4, rank - 1)]
        x = randn(r, *shape)
        perm = [0] + [1 + int(p) for p in r.permutation(rank - 1)] if rank > 1 else [0]
        dims = ", ".join(["?"] + [str(s) for s in shape[1:]])
        got = run_model(d, name, "  input %%x : f32[%s]\n  %%y = transpose %%x {perm = [%s]}\n"
                        "  output %%y\n" % (dims, ", ".join(map(str, perm))), {"x": x}, {},
                        ["y"])
        want = np.ascontiguousarray(np.transpose(x, perm))
        t.check("%s perm %s" % (name, perm), same(got["y"], want), why(got["y"], want))

    # reshape with -1 anywhere
    r = rng_for("reshape")
    x = randn(r, 2, 8, 12)
    for shape, np_shape in (("[?, 8, 3, -1]", (2, 8, 3, -1)), ("[?, -1]", (2, -1)),
                            ("[?, -1, 12, 2, 2]", (2, -1, 12, 2, 2))):
        got = run_model(d, "reshape_" + str(len(np_shape)) + str(np_shape.index(-1)),
                        "  input %%x : f32[?, 8, 12]\n  %%y = reshape %%x {shape = %s}\n"
                        "  output %%y\n" % shape, {"x": x}, {}, ["y"])
        want = x.reshape(np_shape)
        t.check("reshape %s" % shape, same(got["y"], want), why(got["y"], want))

    # softmax over every axis of a rank-4 tensor; causal, square and with a past
    r = rng_for("softmax")
    x = randn(r, 2, 3, 4, 5) * F32(3)
    for axis in (0, 1, 2, 3, -1, -2):
        got = run_model(d, "softmax_axis%d" % axis, "  input %%x : f32[?, 3, 4, 5]\n"
                        "  %%y = softmax %%x {axis = %d}\n  output %%y\n" % axis, {"x": x}, {},
                        ["y"], extra=["--batch", 2])
        want = softmax(x, axis)
        t.check("softmax axis %d" % axis, close(got["y"], want), why(got["y"], want))
    for q, k in ((4, 4), (3, 7), (1, 5)):
        x = randn(r, 2, 2, q, k) * F32(3)
        got = run_model(d, "softmax_causal_%d_%d" % (q, k), "  input %%x : f32[?, 2, %d, %d]\n"
                        "  %%y = softmax %%x {causal = 1}\n  output %%y\n" % (q, k), {"x": x},
                        {}, ["y"])
        want = softmax(x, -1, causal=True)
        masked = np.arange(k)[None, :] > np.arange(q)[:, None] + (k - q)
        t.check("softmax causal %dx%d (past %d)" % (q, k, k - q),
                close(got["y"], want) and not np.any(got["y"][..., masked]),
                why(got["y"], want))


# ---- 2. compiled vs interpreter ----

BLOCK = """
  input %ids : {dt}[?, 8]
  %x = gather @wte, %ids
  %h = rmsnorm %x, @g1 {{eps = 1e-6}}
  %qkv = linear %h, @wqkv
  %q, %k, %v = split %qkv {{axis = -1}}
  %q4 = reshape %q {{shape = [?, 8, 2, -1]}}
  %k4 = reshape %k {{shape = [?, 8, 2, -1]}}
  %v4 = reshape %v {{shape = [?, 8, 2, -1]}}
  %qt = transpose %q4 {{perm = [0, 2, 1, 3]}}
  %kt = transpose %k4 {{perm = [0, 2, 3, 1]}}
  %vt = transpose %v4 {{perm = [0, 2, 1, 3]}}
  %s = matmul %qt, %kt
  %p = softmax %s {{causal = 1}}
  %o = matmul %p, %vt
  %ot = transpose %o {{perm = [0, 2, 1, 3]}}
  %a = reshape %ot {{shape = [?, 8, 16]}}
  %r = add %a, %x
  %c = concat %r, %h {{axis = -1}}
  %sl = slice %c {{axis = 2, start = 4, end = 100}}
  %p2 = softmax %sl {{axis = 1}}
  %y = linear %p2, @wo
  output %y
"""


def block_consts(r):
    return {"wte": randn(r, 50, 16), "g1": randn(r, 16), "wqkv": randn(r, 48, 16) * F32(0.25),
            "wo": randn(r, 10, 28),
            # as a PyTorch state_dict has them: unused, of dtypes q8c does not compute with
            "bn.num_batches_tracked": np.array(3, np.int64), "unused.f64": np.zeros(2)}


def test_compiled(t, d):
    targets = [v for v in q8test.list_targets(Q8C) if v.arch == "x86_64"]
    isas = [v.name for v in targets]
    here = [v.name for v in targets if v.runs_here]
    for dt, npdt in (("i32", np.int32), ("i64", np.int64)):
        r = rng_for("block_" + dt)
        path = os.path.join(d, "block_" + dt)
        os.makedirs(path)
        q8test.write_safetensors(os.path.join(path, "w.safetensors"), block_consts(r))
        model = os.path.join(path, "m.ir")
        with open(model, "w") as f:
            f.write('model block {\n  weights "w.safetensors"\n' + BLOCK.format(dt=dt) + "}\n")
        ids = os.path.join(path, "ids.npy")
        np.save(ids, r.integers(0, 50, (3, 8)).astype(npdt))
        calib = os.path.join(path, "calib.npy")
        np.save(calib, r.integers(0, 50, (16, 8)).astype(npdt))
        bad = os.path.join(path, "bad.npy")
        b = r.integers(0, 50, (3, 8)).astype(npdt)
        b[2, 5] = 50 if dt == "i32" else -1
        np.save(bad, b)

        # the f32 model, then quantized with integer calibration samples, then dynamic
        q_static = os.path.join(path, "q.ir")
        q8c(model, "--calib", calib, "--batch", 3, "-o", q_static)
        q_dyn = os.path.join(path, "qd.ir")
        q8c(model, "--dynamic", "--batch", 3, "-o", q_dyn)
        # compiling quantizes (dynamically without data): keep every layer in f32
        f32_ir = os.path.join(path, "f.ir")
        q8c(model, "--keep-float=%qkv,%y", "--batch", 3, "-o", f32_ir)
        with open(f32_ir) as f:
            ftext = f.read()
        t.check("%s block with --keep-float has no quantized op" % dt,
                "qgemm" not in ftext and "qlinear" not in ftext, ftext[:400])
        with open(q_static) as f:
            text = f.read()
        t.check("%s block quantizes (qgemm present, shape ops kept)" % dt,
                "qgemm" in text and "gather" in text and "rmsnorm" in text, text[:400])
        for kind, ir in (("f32", f32_ir), ("static", q_static), ("dynamic", q_dyn)):
            label = "%s block %s" % (dt, kind)
            ref = os.path.join(path, "ref-%s.npy" % kind)
            q8c("run", ir, "--batch", 3, "-i", ids, "-o", ref)
            want = np.load(ref)
            so = os.path.join(path, "m-%s.so" % kind)
            q8c(ir, "--batch", 3, "--target=" + ",".join(isas), "-o", so)
            for isa in here:
                for how in ("aot", "jit"):
                    got = os.path.join(path, "y-%s-%s-%s.npy" % (kind, isa, how))
                    if how == "aot":
                        q8c("run", so, "-i", ids, "-o", got, env={"Q8_ISA": isa})
                    else:
                        q8c("run", ir, "--jit", "--batch", 3, "--target=" + isa, "-i", ids,
                            "-o", got)
                    have = np.load(got)
                    t.check("%s %s %s bit-exact" % (label, isa, how), same(have, want),
                            why(have, want))
            # 3. an id outside the table: an error everywhere
            rr = q8c("run", ir, "--batch", 3, "-i", bad, "-o", os.path.join(path, "b.npy"),
                     check=False)
            t.check("%s interpreter refuses a bad id" % label,
                    rr.returncode == 1 and "outside the table @wte" in rr.stderr and
                    "%ids" in rr.stderr, rr.stderr)
            for isa in here:
                rr = q8c("run", so, "-i", bad, "-o", os.path.join(path, "b.npy"),
                         env={"Q8_ISA": isa}, check=False)
                t.check("%s %s .so refuses a bad id" % (label, isa),
                        rr.returncode != 0 and "input 'ids'" in rr.stderr and
                        "embedding table" in rr.stderr, rr.stderr)
                rr = q8c("run", ir, "--jit", "--batch", 3, "--target=" + isa, "-i", bad, "-o",
                         os.path.join(path, "b.npy"), check=False)
                t.check("%s %s jit refuses a bad id" % (label, isa),
                        rr.returncode != 0 and "input 'ids'" in rr.stderr, rr.stderr)
        # the f32 interpreter against numpy on the whole block
        r = rng_for("block_" + dt)
        c = block_consts(r)
        x = c["wte"][np.load(ids)]
        h = rmsnorm(x, c["g1"])
        qkv = (h.astype(np.float64) @ c["wqkv"].astype(np.float64).T).astype(F32)
        q, k, v = (a.reshape(3, 8, 2, 8) for a in np.split(qkv, 3, -1))
        s = (q.transpose(0, 2, 1, 3).astype(np.float64) @ k.transpose(0, 2, 3, 1)).astype(F32)
        p = softmax(s, causal=True)
        o = (p.astype(np.float64) @ v.transpose(0, 2, 1, 3)).astype(F32)
        a = o.transpose(0, 2, 1, 3).reshape(3, 8, 16)
        rsum = (a + x).astype(F32)
        cat = np.concatenate([rsum, h], -1)[:, :, 4:]
        y = (softmax(cat, 1).astype(np.float64) @ c["wo"].astype(np.float64).T).astype(F32)
        yp = os.path.join(path, "numpy-ref.npy")
        q8c("run", model, "-i", ids, "-o", yp)
        have = np.load(yp)
        t.check("%s block interpreter = numpy" % dt,
                have.shape == y.shape and np.allclose(have, y, rtol=1e-4, atol=1e-5),
                why(have, y))


def main():
    if Q8C is None:
        print("usage: test_ops_shape.py /path/to/q8c", file=sys.stderr)
        return 2
    d = q8test.tmpdir("q8c-shape-")
    t = q8test.Tally()
    for fn in (test_ops, test_compiled):
        try:
            fn(t, d)
        except Exception as e:  # one broken part must not hide the others
            t.check(fn.__name__ + " ran", False, "%s: %s" % (type(e).__name__, e))
    t.check("every single-op model (%d) compiled by --jit = interpreter, bit for bit" %
            len(JIT_CASES), JIT_CASES and not JIT_DIFFS, "; ".join(JIT_DIFFS))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
