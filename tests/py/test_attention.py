"""test_attention: the quantized matmul of two activations (qmatmul,
qmatmul_dyn; docs/quantization.md, "Quantized matmul of two activations").

usage: test_attention.py /path/to/q8c

1. A numpy implementation of the documented arithmetic, bit for bit against
   the interpreter (`q8c run`) on random data: static with u8 and s8
   activations, with integer operands and result (--stop-after=quantize) and
   with the fused f32 entry and exit (the whole pipeline), and dynamic.
2. An attention block (q, k, v linears, heads by reshape and transpose,
   Q K^T scaled, softmax, P V, output linear) quantized end to end: its SQNR
   against float above a bar, and every variant this CPU runs (.so and JIT)
   bit-exact against the interpreter.
3. A matmul of two activations whose leading dims differ stays in f32 with
   a note.
"""
import os
import subprocess
import sys

import numpy as np

import q8test
from q8models import linear_params, write_model

F32 = np.float32
Q8C = None


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=300)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)),
                                                       r.returncode, r.stderr))
    return r


# ---- the documented arithmetic in numpy ----

def bounds(dtype):
    return (0, 255) if dtype == "u8" else (-127, 127)


def quantize(x, scale, zp, dtype):
    """clamp(rint(f32(x / s)), qmin - z, qmax - z) + z; NaN -> z."""
    lo, hi = bounds(dtype)
    v = x.astype(F32) / F32(scale)
    q = np.clip(np.rint(v), lo - zp, hi - zp) + zp
    return np.where(np.isnan(v), zp, q).astype(np.int64)


def int_matmul(xq, zx, bq, zb):
    """sum_k (xq - zx)(bq - zb) in int64, then wrapped to int32."""
    acc = np.matmul(xq - zx, bq - zb)
    return ((acc + 2**31) % 2**32 - 2**31).astype(np.int64)


def qmatmul(x, b, a):
    """The static qmatmul of docs/quantization.md on f32 or integer operands."""
    xq = x.astype(np.int64) if x.dtype != F32 else quantize(x, a["x_scale"], a["x_zero_point"],
                                                            a["x_dtype"])
    bq = b.astype(np.int64) if b.dtype != F32 else quantize(b, a["b_scale"], a["b_zero_point"],
                                                            a["b_dtype"])
    acc = int_matmul(xq, a["x_zero_point"], bq, a["b_zero_point"])
    sxb = np.float64(F32(a["x_scale"])) * np.float64(F32(a["b_scale"]))
    if a["dtype"] == "f32":
        return acc.astype(F32) * F32(sxb)
    mult = F32(sxb / np.float64(F32(a["scale"])))
    zp = a["zero_point"]
    lo, hi = bounds(a["dtype"])
    r = np.clip(np.rint(acc.astype(F32) * mult), lo - zp, hi - zp) + zp
    return r.astype(np.uint8 if a["dtype"] == "u8" else np.int8)


def dyn_params(v):
    """u8 parameters of `v` at run time: the finite range widened to 0."""
    f = v[np.isfinite(v)]
    lo = min(F32(0), f.min()) if f.size else F32(0)
    hi = max(F32(0), f.max()) if f.size else F32(0)
    s = F32((np.float64(hi) - np.float64(lo)) / 255.0)
    if not s >= 1e-30:
        s = F32(1)
    z = int(np.clip(np.rint(-np.float64(lo) / np.float64(s)), 0, 255))
    return s, z


def qmatmul_dyn(x, b):
    """qmatmul_dyn: each row of x and each [K, N] matrix of b to u8 at run time."""
    lead = x.shape[:-2]
    xs = x.reshape((-1,) + x.shape[-2:])
    bs = b.reshape((-1,) + b.shape[-2:])
    y = np.zeros((xs.shape[0], xs.shape[1], bs.shape[2]), F32)
    for i in range(xs.shape[0]):
        sb, zb = dyn_params(bs[i])
        bq = quantize(bs[i], sb, zb, "u8")
        for r in range(xs.shape[1]):
            sx, zx = dyn_params(xs[i, r])
            xq = quantize(xs[i, r], sx, zx, "u8")
            acc = int_matmul(xq[None, :], zx, bq, zb)[0]
            y[i, r] = acc.astype(F32) * F32(sx * sb)
    return y.reshape(lead + y.shape[1:])


def same_bits(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, "%s %s vs %s %s" % (a.dtype, a.shape, b.dtype, b.shape)
    same = a.tobytes() == b.tobytes()
    return same, "%d elements" % a.size if same else "%d of %d differ" % (
        int(np.sum(a.view(np.uint8) != b.view(np.uint8))), a.size)


# ---- 1. numpy against the interpreter ----

PAIR = """model pair {
  weights "WEIGHTS"
  input %x : f32[?, 3, 5, 8]
  %b0 = mul %x, @c
  %b = transpose %b0 {perm = [0, 1, 3, 2]}
  %s = matmul %x, %b
  output %s
}
"""


def node(ir, op):
    return [n for n in ir["nodes"] if n["op"] == op]


def test_numpy(t, rng):
    d = q8test.tmpdir()
    c = rng.uniform(-1.5, 1.5, 8).astype(F32)
    model = write_model(d, "pair", PAIR, {"c": c})
    calib = os.path.join(d, "calib.npy")
    np.save(calib, (rng.standard_normal((16, 3, 5, 8)) * 2).astype(F32))
    x = (rng.standard_normal((6, 3, 5, 8)) * 2).astype(F32)
    x[0, 0, 0, :3] = [40.0, -40.0, np.nan]     # saturation and NaN
    xpath = os.path.join(d, "x.npy")
    np.save(xpath, x)
    b = np.swapaxes(x * c, -1, -2)
    for acts in ("u8-asym", "s8-sym"):
        for stop in ("quantize", None):
            tag = "%s %s" % (acts, "unfused" if stop else "fused")
            qir = os.path.join(d, "q.ir")
            q8c(model, "--calib", calib, "--activations=" + acts, "-o", qir,
                *(["--stop-after=" + stop] if stop else []))
            with open(qir) as f:
                ir = q8test.parse_ir(f.read())
            qm = node(ir, "qmatmul")
            if not t.record("%s: one qmatmul" % tag, len(qm) == 1,
                            " ".join(n["op"] for n in ir["nodes"])):
                continue
            a = qm[0]["attrs"]
            opnd_types = {n["name"]: n["type"][0] for n in ir["nodes"]}
            xin, bin_ = x, b
            if stop:
                # quantize nodes before it, a dequantize after.
                xin = quantize(x, a["x_scale"], a["x_zero_point"], a["x_dtype"])
                bin_ = quantize(b, a["b_scale"], a["b_zero_point"], a["b_dtype"])
                t.record("%s: integer operands and result" % tag,
                         opnd_types.get(qm[0]["operands"][0][1]) == a["x_dtype"]
                         and a["dtype"] != "f32", str(a))
            else:
                t.record("%s: f32 entry and exit fused" % tag,
                         a["dtype"] == "f32" and not node(ir, "quantize")
                         and not node(ir, "dequantize"), str(a))
            want = qmatmul(xin, bin_, a)
            if stop:
                want = ((want.astype(F32) - F32(a["zero_point"]))
                        .astype(F32) * F32(a["scale"])).astype(F32)
            out = os.path.join(d, "y.npy")
            q8c("run", qir, "-i", xpath, "-o", out)
            ok, detail = same_bits(np.load(out), want)
            t.record("%s: interpreter = numpy bit for bit" % tag, ok, detail)
    qir = os.path.join(d, "dyn.ir")
    q8c(model, "--dynamic", "-o", qir)
    with open(qir) as f:
        ir = q8test.parse_ir(f.read())
    t.record("dynamic: one qmatmul_dyn", len(node(ir, "qmatmul_dyn")) == 1,
             " ".join(n["op"] for n in ir["nodes"]))
    out = os.path.join(d, "yd.npy")
    q8c("run", qir, "-i", xpath, "-o", out)
    ok, detail = same_bits(np.load(out), qmatmul_dyn(x, b))
    t.record("dynamic: interpreter = numpy bit for bit", ok, detail)


# ---- 2. an attention block ----

ATTENTION = """model attention {
  weights "WEIGHTS"
  input %x : f32[?, 8, 32]
  %q = linear %x, @wq, @bq
  %k = linear %x, @wk, @bk
  %v = linear %x, @wv, @bv
  %qh = reshape %q {shape = [?, 8, 4, 8]}
  %qt = transpose %qh {perm = [0, 2, 1, 3]}
  %kh = reshape %k {shape = [?, 8, 4, 8]}
  %kt = transpose %kh {perm = [0, 2, 3, 1]}
  %vh = reshape %v {shape = [?, 8, 4, 8]}
  %vt = transpose %vh {perm = [0, 2, 1, 3]}
  %s = matmul %qt, %kt
  %ss = mul %s, @scale
  %p = softmax %ss
  %o = matmul %p, %vt
  %ot = transpose %o {perm = [0, 2, 1, 3]}
  %of = reshape %ot {shape = [?, 8, 32]}
  %y = linear %of, @wo, @bo
  output %y
}
"""

# The bar: measured 32.64 dB static u8, 31.84 dB s8-sym, 37.36 dB dynamic on
# this model and seed (64 calibration samples, 5 test samples); int8
# attention with per-tensor activations lands near 30-40 dB, and a wrong
# zero point or multiplier drops it far below the bar.
ATTN_MIN_SQNR = 28.0


def test_attention(t, rng):
    d = q8test.tmpdir()
    tensors = {"scale": np.full(8, 1 / np.sqrt(8), F32)}
    for n in ("q", "k", "v", "o"):
        w, b = linear_params(rng, 32, 32)
        tensors["w" + n], tensors["b" + n] = w * 2, b
    model = write_model(d, "attention", ATTENTION, tensors)
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((64, 8, 32)).astype(F32))
    x = rng.standard_normal((5, 8, 32)).astype(F32)
    xpath = os.path.join(d, "x.npy")
    np.save(xpath, x)
    yf = os.path.join(d, "yf.npy")
    q8c("run", model, "-i", xpath, "-o", yf)
    kept = q8c(model, "--calib", calib, "--keep-float", "s", "--emit=ir").stdout
    t.check("attention --keep-float s: %s stays matmul {keep_float = 1}, %o a qmatmul",
            "= matmul %qt, %kt {keep_float = 1}" in kept and "= qmatmul %p, %vt" in kept, kept)
    targets = [v for v in q8test.list_targets(Q8C) if v.arch == "x86_64" or v.runs_here]
    runs = [v.name for v in targets if v.runs_here]
    for name, args in (("static", ["--calib", calib]), ("s8-sym", ["--calib", calib,
                                                                    "--activations=s8-sym"]),
                       ("dynamic", ["--dynamic"])):
        qir = os.path.join(d, "q_%s.ir" % name)
        q8c(model, *args, "-o", qir)
        with open(qir) as f:
            ir = q8test.parse_ir(f.read())
        op = "qmatmul_dyn" if name == "dynamic" else "qmatmul"
        ops = [n["op"] for n in ir["nodes"]]
        t.record("attention %s: two %s, no float matmul" % (name, op),
                 ops.count(op) == 2 and "matmul" not in ops, " ".join(ops))
        if name != "dynamic":
            # P V quantizes the softmax itself, Q K^T gives f32 to it.
            # The one quantize left is the model input's, shared by q, k, v.
            quants = node(ir, "quantize")
            t.record("attention %s: no dequantize/quantize around softmax" % name,
                     "dequantize" not in ops and len(quants) == 1
                     and quants[0]["operands"][0][1] == "x", " ".join(ops))
        if name != "s8-sym":
            # The report: a row per qmatmul, its weight column naming the
            # activation, with its propagated SQNR (measured: o 33.77, s
            # 34.74 dB static; o 38.3, s 39.33 dB dynamic).
            rep = q8c(model, *args, "--report", *([] if "--calib" in args else
                                                  ["--calib", calib])).stdout
            rows = {l.split()[0]: l.split() for l in rep.splitlines()
                    if len(l.split()) > 3 and l.split()[1] == op}
            ok = set(rows) == {"s", "o"} and rows["s"][2:4] == ["activation", "%kt"] and \
                rows["o"][2:4] == ["activation", "%vt"]
            sq = [float(rows[k][-6]) for k in sorted(rows)] if ok else []
            t.check("attention %s: report rows s, o with SQNR %s >= %.0f dB" % (
                name, sq, ATTN_MIN_SQNR), ok and min(sq) >= ATTN_MIN_SQNR, rep)
        yq = os.path.join(d, "yq_%s.npy" % name)
        q8c("run", qir, "-i", xpath, "-o", yq)
        s = q8test.sqnr_db(np.load(yf), np.load(yq))
        t.record("attention %s: SQNR %.2f dB >= %.0f dB" % (name, s, ATTN_MIN_SQNR),
                 s >= ATTN_MIN_SQNR)
        so = os.path.join(d, "m_%s.so" % name)
        q8c(qir, "--batch", 5, "--target=" + ",".join(runs), "-o", so)
        for isa in runs:
            for how in ("aot", "jit"):
                got = os.path.join(d, "y_%s_%s_%s.npy" % (name, isa, how))
                if how == "aot":
                    r = q8c("run", so, "-i", xpath, "-o", got, env={"Q8_ISA": isa}, check=False)
                else:
                    r = q8c("run", qir, "--jit", "--target=" + isa, "-i", xpath, "-o", got,
                            check=False)
                if not t.check("attention %s %s %s runs" % (name, isa, how), r.returncode == 0,
                               r.stderr):
                    continue
                ok, detail = same_bits(np.load(got), np.load(yq))
                t.record("attention %s %s %s bit-exact vs interpreter" % (name, isa, how), ok,
                         detail)


# ---- integer operands and result, compiled ----

INTEGER = """model qint {
  input %x : u8[?, 2, 5, 7]
  input %b : i8[?, 2, 7, 6]
  %s = qmatmul %x, %b {x_scale = 0.05, x_zero_point = 131, x_dtype = u8, b_scale = 0.07, b_zero_point = 0, b_dtype = i8, scale = 0.9, zero_point = 120, dtype = u8}
  output %s
}
"""


def test_integer_compiled(t, rng):
    """u8 x i8 -> u8 with rows that are not a multiple of 4 bytes (the
    padded layout of quantized values): numpy, interpreter and every
    variant that runs here agree bit for bit."""
    d = q8test.tmpdir()
    path = os.path.join(d, "qint.ir")
    with open(path, "w") as f:
        f.write(INTEGER)
    x = rng.integers(0, 256, (3, 2, 5, 7)).astype(np.uint8)
    b = rng.integers(-127, 128, (3, 2, 7, 6)).astype(np.int8)
    xp, bp = os.path.join(d, "x.npy"), os.path.join(d, "b.npy")
    np.save(xp, x)
    np.save(bp, b)
    a = {"x_scale": 0.05, "x_zero_point": 131, "x_dtype": "u8", "b_scale": 0.07,
         "b_zero_point": 0, "b_dtype": "i8", "scale": 0.9, "zero_point": 120, "dtype": "u8"}
    want = qmatmul(x, b, a)
    ref = os.path.join(d, "ref.npy")
    q8c("run", path, "-i", "x=" + xp, "-i", "b=" + bp, "-o", ref)
    ok, detail = same_bits(np.load(ref), want)
    t.record("u8 x i8 -> u8: interpreter = numpy", ok, detail)
    runs = [v.name for v in q8test.list_targets(Q8C) if v.runs_here]
    so = os.path.join(d, "m.so")
    q8c(path, "--batch", 3, "--target=" + ",".join(runs), "-o", so)
    for isa in runs:
        for how in ("aot", "jit"):
            got = os.path.join(d, "y_%s_%s.npy" % (isa, how))
            src = so if how == "aot" else path
            extra = [] if how == "aot" else ["--jit", "--target=" + isa]
            r = q8c("run", src, *extra, "-i", "x=" + xp, "-i", "b=" + bp, "-o", got,
                    env={"Q8_ISA": isa}, check=False)
            if not t.check("u8 x i8 -> u8 %s %s runs" % (isa, how), r.returncode == 0, r.stderr):
                continue
            ok, detail = same_bits(np.load(got), want)
            t.record("u8 x i8 -> u8 %s %s = numpy" % (isa, how), ok, detail)


# ---- 3. broadcast leading dims stay in f32 ----

BROADCAST = """model bcast {
  input %x : f32[?, 5, 8]
  input %b : f32[8, 5]
  %s = matmul %x, %b
  output %s
}
"""


def test_broadcast(t):
    d = q8test.tmpdir()
    path = os.path.join(d, "bcast.ir")
    with open(path, "w") as f:
        f.write(BROADCAST)
    r = q8c(path, "--dynamic", "-o", os.path.join(d, "q.ir"), check=False)
    with open(os.path.join(d, "q.ir")) as f:
        text = f.read()
    t.check("broadcast matmul stays f32 with a note",
             r.returncode == 0 and "= matmul %x, %b" in text and "stays in f32" in r.stderr,
             r.stderr + text)


def main():
    global Q8C
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    Q8C = sys.argv[1]
    t = q8test.Tally()
    rng = np.random.default_rng(7)
    test_numpy(t, rng)
    test_attention(t, rng)
    test_integer_compiled(t, rng)
    test_broadcast(t)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
