"""test_wformat: the grouped weight formats (--weights=s4-per-group:G,
u4-per-group:G, s8-per-group:G, ':f32' scales; --weights-for per weight;
docs/quantization.md, "Weight formats") and their kernel (codegen/qgroup.c).

usage: test_wformat.py /path/to/q8c

1. Each format on linear layers M x K x N (M 1 and several rows, N below,
   at and past the 8-channel block, with and without a bias), on inputs with
   NaN, Inf, zero and one-signed rows: the compiled model on every x86
   variant this CPU runs (the .so; the JIT on the best) is bit-exact with
   the interpreter, the others compile; every AArch64 variant under qemu on
   some shapes (skipped, with the reason, without the toolchain or qemu).
2. The IR: qlinear_grp with its group, wbits, sbits and, u4, a zero-point
   operand; the quantized weights inside the format's range; f16 scales
   exactly representable in f16; --weights-for overriding one weight; a K
   that is no multiple of G falls back to qlinear_dyn with a note.
3. The compiled kernels: no reference call, and each variant's multiply
   (vpdpbusd on VNNI, vpmaddubsw on AVX2, udot on AArch64 dotprod/i8mm).
4. Errors: exact messages for malformed formats and --weights-for lists.
5. Accuracy: the output SQNR of one layer against f32 for Gaussian and
   Student-t (3 dof) weights, printed per format; 4-bit below 8-bit, smaller
   groups at least as good as larger ones on heavy tails.
"""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
import test_aarch64 as a64  # noqa: E402
import test_attn_kernels as ak  # noqa: E402  (its Check: every variant vs the interpreter)
from q8models import linear_params, write_model  # noqa: E402

Q8C = os.path.abspath(sys.argv[1]) if len(sys.argv) == 2 else None
ak.Q8C = Q8C
q8c = a64.q8c

FORMATS = ["s4-per-group:32", "u4-per-group:32", "s8-per-group:32", "s4-per-group:64:f32",
           "u4-per-group:128", "s8-per-group:64:f32"]
SHAPES = [(1, 128, 8), (3, 128, 13), (1, 256, 5), (5, 384, 17), (8, 256, 24),
          # M = 1 takes the blocks of 8 channels two at a time: a pair whose
          # second block is partial, a pair and an odd block; M between 1 and 16
          (1, 128, 13), (1, 384, 20), (2, 128, 16), (13, 256, 9)]
A64 = {(3, 128, 13), (1, 128, 13)}
# Past 2048 groups of 32 a tile's x terms no longer go on the stack
# (qgroup.c, XC_MAX_BYTES): the kernel sums x per block instead.
LONG_K = [(1, 32 * 2049, 3), (2, 32 * 2049, 11)]


def lin_model(d, rng, k, n, bias, scale=3.0):
    w, b = linear_params(rng, n, k)
    return write_model(d, "lin", """model lin {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w%s
  output %%y
}
""" % (k, ", @b" if bias else ""), {"w": w * scale, "b": b} if bias else {"w": w * scale})


def nodes_of(path):
    with open(path) as f:
        return q8test.parse_ir(f.read())["nodes"]


def test_formats(chk, rng):
    for fi, fmt in enumerate(FORMATS):
        for si, (m, k, n) in enumerate(SHAPES):
            bias = (fi + si) % 2 == 0
            d = q8test.tmpdir()
            model = lin_model(d, rng, k, n, bias)
            ir = os.path.join(d, "q.ir")
            q8c(model, "--weights=" + fmt, "-o", ir)
            ops = [nd["op"] for nd in nodes_of(ir)]
            label = "%s %dx%dx%d%s" % (fmt, m, k, n, "" if bias else " no bias")
            if not chk.t.check(label + ": one qlinear_grp", ops == ["qlinear_grp"], str(ops)):
                continue
            inputs = ak.save_inputs(d, {"x": ak.awkward_f32(rng, (m, k))})
            chk.run(label, ir, inputs, ("y",), m, (m, k, n) in A64 and fi < 3)
    for fmt in ("s4-per-group:32", "u4-per-group:32"):
        for (m, k, n) in LONG_K:
            d = q8test.tmpdir()
            model = lin_model(d, rng, k, n, True)
            ir = os.path.join(d, "q.ir")
            q8c(model, "--weights=" + fmt, "-o", ir)
            label = "%s %dx%dx%d" % (fmt, m, k, n)
            inputs = ak.save_inputs(d, {"x": ak.awkward_f32(rng, (m, k))})
            chk.run(label, ir, inputs, ("y",), m, m == 1 and fmt.startswith("s4"))


def test_ir(t, rng):
    d = q8test.tmpdir()
    model = lin_model(d, rng, 96, 12, True)
    for fmt, lo, hi, g, wbits, sbits, zero in (
            ("s4-per-group:32", -7, 7, 32, 4, 16, False),
            ("u4-per-group:32:f32", 0, 15, 32, 4, 32, True),
            ("s8-per-group:32:f16", -127, 127, 32, 8, 16, False)):
        ir = os.path.join(d, "q.ir")
        q8c(model, "--weights=" + fmt, "-o", ir)
        with open(ir) as f:
            text = f.read()
        want = "{group = %d, wbits = %d, sbits = %d}" % (g, wbits, sbits)
        t.check("%s: qlinear_grp %s" % (fmt, want), want in text and "qlinear_grp" in text,
                text)
        t.check("%s: zero points %s" % (fmt, "given" if zero else "absent"),
                ("@w.zero" in text) == zero, text)
        st = q8test.read_safetensors(os.path.join(d, "q.safetensors"))
        q = st["w.q"]
        t.check("%s: weights in [%d, %d] and use the range" % (fmt, lo, hi),
                q.min() >= lo and q.max() <= hi and (q.max() == hi or q.min() == lo),
                "%d..%d" % (q.min(), q.max()))
        s = st["w.scale"]
        t.check("%s: scales [12, 3]" % fmt, s.shape == (12, 3), str(s.shape))
        if sbits == 16:
            t.check("%s: scales are f16 values" % fmt,
                    np.array_equal(s.astype(np.float16).astype(np.float32), s), "")
        if zero:
            z = st["w.zero"]
            t.check("%s: zero points in [0, 15]" % fmt, z.min() >= 0 and z.max() <= 15, "")
    # --weights-for: one weight overridden (the other layer keeps --weights).
    w1, b1 = linear_params(rng, 16, 64)
    w2, b2 = linear_params(rng, 10, 16)
    two = write_model(d, "two", """model two {
  weights "WEIGHTS"
  input %x : f32[?, 64]
  %h = linear %x, @w1, @b1
  %y = linear %h, @w2, @b2
  output %y
}
""", {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    ir = os.path.join(d, "two.q.ir")
    r = q8c(two, "--weights=s4-per-group:32", "--dynamic", "--weights-for=@w2:s8-per-channel",
            "-o", ir)
    ops = [nd["op"] for nd in nodes_of(ir)]
    t.check("--weights-for=@w2:s8-per-channel: qlinear_grp then qlinear_dyn",
            ops == ["qlinear_grp", "qlinear_dyn"], str(ops))
    r = q8c(two, "--weights=s8-per-channel", "--dynamic",
            "--weights-for=@w1:u4-per-group:32,@w2:s8-per-tensor", "-o", ir)
    nodes = nodes_of(ir)
    with open(ir) as f:
        text = f.read()
    t.check("--weights-for two entries: qlinear_grp (u4) then qlinear_dyn per tensor",
            [nd["op"] for nd in nodes] == ["qlinear_grp", "qlinear_dyn"] and "@w1.zero" in text
            and "@w2.q, @w2.scale" in text and
            q8test.read_safetensors(os.path.join(d, "two.q.safetensors"))["w2.scale"].shape == (1,),
            text)
    # K = 16 is no multiple of 32: that layer falls back, with a note.
    r = q8c(two, "--weights=s4-per-group:32", "-o", ir)
    ops = [nd["op"] for nd in nodes_of(ir)]
    t.check("K not a multiple of G: qlinear_grp then qlinear_dyn", ops ==
            ["qlinear_grp", "qlinear_dyn"], str(ops))
    note = ("note: quantize: @w2 has K = 16 inputs, not a multiple of the group of "
            "s4-per-group:32: it is quantized s8-per-channel, its activations per row "
            "(qlinear_dyn)")
    t.check("K not a multiple of G: the note", note in r.stderr, r.stderr)
    # The report's size line names the formats and counts a grouped layer's
    # weights as compiled (4 bits each, f16 scales), not the IR's bytes.
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((20, 64)).astype(np.float32))
    r = q8c(two, "--weights=s4-per-group:32", "--calib", calib, "--report", "-o",
            os.path.join(d, "two.so"))
    f32_bytes = 4 * (w1.size + b1.size + w2.size + b2.size)
    q8c(two, "--weights=s4-per-group:32", "--calib", calib, "-o", ir)
    st = q8test.read_safetensors(os.path.join(d, "two.q.safetensors"))
    grp = sum(st[c].nbytes for c in ("w1.q", "w1.scale", "b1"))
    q_bytes = sum(a.nbytes for a in st.values()) - grp + (16 * 64 * 4 + 16 * 2 * 16) // 8 + 16 * 4
    want = ("model size: f32 %s, s4-per-group:32 + int8 %s (%.2fx smaller, %s saved)" % (
        fmt_size(f32_bytes), fmt_size(q_bytes), f32_bytes / q_bytes, fmt_size(f32_bytes - q_bytes)))
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("model size:")]
    t.check("report size line '%s'" % want, lines == [want], str(lines))


def fmt_size(n):
    """A byte count as the report prints it (test_report.py's fmt_size)."""
    if -1024 < n < 1024:
        return "%d B" % n
    v = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        v /= 1024
        s = "%.1f %s" % (v, unit)
        if abs(float(s.split()[0])) < 1024:
            return s
    return s


def test_kernels(t, rng):
    d = q8test.tmpdir()
    model = lin_model(d, rng, 64, 24, True)
    targets = q8test.list_targets(Q8C)
    multiply = {"avx512vnni": r"vpdpbusd\s+%ymm", "avxvnni": r"\{vex\}\s+vpdpbusd|vpdpbusd\s+%ymm",
                "avx2": r"vpmaddubsw\s+[^\n]*%ymm", "generic": r"pmullw\s+%xmm|pmaddwd\s+%xmm",
                "aarch64-i8mm": r"\budot\b", "aarch64-dotprod": r"\budot\b",
                "aarch64": r"\bmul\s+v\d+\.8h"}
    for fmt in ("s4-per-group:32", "u4-per-group:32"):
        ir = os.path.join(d, "q.ir")
        q8c(model, "--weights=" + fmt, "-o", ir)
        for v in targets:
            if v.name not in multiply:
                continue
            ll, asm = os.path.join(d, "m.ll"), os.path.join(d, "m.s")
            r1 = q8c(ir, "--target=" + v.name, "--emit=llvm", "-o", ll, check=False)
            r2 = q8c(ir, "--target=" + v.name, "--emit=asm", "-o", asm, check=False)
            if not t.check("%s %s: compiles" % (fmt, v.name),
                           r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr):
                continue
            with open(ll) as f:
                t.check("%s %s: no reference call" % (fmt, v.name),
                        "@q8_ref_qlinear_grp" not in f.read(), "")
            with open(asm) as f:
                t.check("%s %s: the kernel multiplies with /%s/" % (fmt, v.name, multiply[v.name]),
                        re.search(multiply[v.name], f.read()) is not None, "")


def test_errors(t, rng):
    d = q8test.tmpdir()
    model = lin_model(d, rng, 64, 8, True)
    cases = [
        ("--weights=s4-per-group", "--weights: weight format 's4-per-group' needs a group size: "
         "s4-per-group:32, :64 or :128"),
        ("--weights=s4-per-group:48", "--weights: weight format 's4-per-group:48' needs a group "
         "size: s4-per-group:32, :64 or :128"),
        ("--weights=u4-per-group:32:bf16", "--weights: weight format 'u4-per-group:32:bf16': "
         "the scale type is f16 or f32, not 'bf16'"),
        ("--weights=s8-per-channel:32", "--weights: weight format 's8-per-channel:32' takes no "
         "group size"),
        ("--weights=s3", "--weights: unknown weight format 's3' (s8-per-channel, s8-per-tensor, "
         "s4-per-group:G, u4-per-group:G, s8-per-group:G, nf4:G, fp4:G)"),
        ("--weights-for=w:s4-per-group:32", "--weights-for takes @WEIGHT:FORMAT[,@WEIGHT:FORMAT], "
         "not 'w:s4-per-group:32'"),
        ("--weights-for=@w:s4", "--weights-for @w: unknown weight format 's4'"),
    ]
    for opt, want in cases:
        r = q8c(model, opt, "-o", os.path.join(d, "q.ir"), check=False)
        t.check("%s: error" % opt, r.returncode != 0 and want in r.stderr, r.stderr)


def test_sqnr(t, rng):
    """One layer 1 x 512 x 256, weights Gaussian and Student-t (3 dof)."""
    d = q8test.tmpdir()
    k, n = 512, 256
    x = rng.standard_normal((8, k)).astype(np.float32)
    xp = os.path.join(d, "x.npy")
    np.save(xp, x)
    fmts = ["s8-per-channel", "s8-per-group:32", "s4-per-group:32", "s4-per-group:128",
            "u4-per-group:32", "u4-per-group:128", "s4-per-group:32:f32"]
    res = {}
    for dist in ("gaussian", "student-t3"):
        w = (rng.standard_normal((n, k)) if dist == "gaussian" else
             rng.standard_t(3, (n, k))).astype(np.float32) * 0.05
        model = write_model(d, "lin", """model lin {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w
  output %%y
}
""" % k, {"w": w})
        ref = x @ w.T
        for fmt in fmts:
            ir = os.path.join(d, "q.ir")
            q8c(model, "--weights=" + fmt, "--dynamic", "-o", ir)
            out = os.path.join(d, "y.npy")
            q8c("run", ir, "-i", xp, "-o", out)
            res[dist, fmt] = q8test.sqnr_db(ref, np.load(out))
        print("SQNR %-11s %s" % (dist, "  ".join("%s %.1f dB" % (f, res[dist, f])
                                                  for f in fmts)), flush=True)
        t.check("%s: 8-bit above 4-bit" % dist,
                min(res[dist, "s8-per-channel"], res[dist, "s8-per-group:32"]) >
                max(res[dist, f] for f in fmts if "4-per" in f), "")
        t.check("%s: 4-bit in groups of 32 above 15 dB" % dist,
                res[dist, "s4-per-group:32"] > 15 and res[dist, "u4-per-group:32"] > 15, "")
    t.check("student-t3: groups of 32 at least as good as 128 (s4 and u4)",
            res["student-t3", "s4-per-group:32"] >= res["student-t3", "s4-per-group:128"] and
            res["student-t3", "u4-per-group:32"] >= res["student-t3", "u4-per-group:128"], "")


def main():
    if not Q8C:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    t = q8test.Tally()
    rng = np.random.default_rng(17)
    chk = ak.Check(t)
    test_formats(chk, rng)
    test_ir(t, rng)
    test_kernels(t, rng)
    test_errors(t, rng)
    test_sqnr(t, rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
