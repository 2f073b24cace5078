"""test_outliers: --outliers[=T], LLM.int8's outlier decomposition
(qlinear_outl; docs/quantization.md, "Outlier decomposition").

usage: test_outliers.py /path/to/q8c

1. Semantics: the interpreter's qlinear_outl equals, byte for byte, an
   independent numpy form of the definition (the batch's outlier columns,
   qlinear_dyn of x with them zeroed, the f32 sum over them in ascending
   order, mul then add), on inputs with outlier columns, NaN, +-Inf (an
   outlier column) and columns exactly at the threshold; a batch without
   outliers gives qlinear_dyn's bytes exactly; a matmul by a constant uses
   its constant as W^T.
2. Generated code: every x86 variant that runs here (.so and JIT) and every
   AArch64 variant under qemu (two shapes) against the interpreter, byte
   for byte, over shapes with 1s, primes and tile tails; AVX512-VNNI and
   AVX-VNNI compiled, their LLVM IR free of reference calls but the
   detection and the correction, their assembly multiplying with VNNI.
3. Accuracy: a model calibrated on samples without outliers, run on held-out
   inputs with 3 columns at 20-60x: --outliers=6 against --dynamic and
   static int8 (output SQNR vs the float model, bars asserted).
4. Usage errors with their exact text; the C API's option via --report.
"""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
import test_attn_kernels as ak  # noqa: E402  (its Check: every variant, qemu)
from q8models import linear_params, write_model  # noqa: E402
from test_quant_e2e import qlinear_dyn  # noqa: E402

F32 = np.float32
HINT = "Try 'q8c --help' for more information.\n"
q8c = ak.q8c


# ---- the definition in numpy ----

def qlinear_outl(x, wq, ws, wt, b, threshold):
    """docs/quantization.md, "Outlier decomposition", written again."""
    x = np.asarray(x, F32)
    with np.errstate(invalid="ignore"):
        cols = np.nonzero((np.abs(x) >= F32(threshold)).any(axis=0))[0]
    xz = x.copy()
    xz[:, cols] = F32(0)
    node = {"operands": [None, ("@", "wq"), ("@", "ws")] + ([("@", "b")] if b is not None else [])}
    consts = {"wq": wq, "ws": ws}
    if b is not None:
        consts["b"] = b
    y = qlinear_dyn(xz, node, consts)
    if len(cols) == 0:
        return y
    with np.errstate(invalid="ignore", over="ignore"):
        o = (x[:, cols[0], None] * wt[cols[0]][None, :]).astype(F32)
        for c in cols[1:]:
            o = (o + (x[:, c, None] * wt[c][None, :]).astype(F32)).astype(F32)
        return (y + o).astype(F32)


def outlier_input(rng, m, k, awkward=True):
    """Gaussian rows; a few columns 20-60x (outliers), one exactly at the
    threshold 6, one just below; with awkward NaN and +-Inf."""
    x = rng.standard_normal((m, k)).astype(F32)
    if k >= 4:
        picks = rng.choice(max(k - 2, 1), size=min(3, k // 2), replace=False)
        for c, f in zip(picks, (20, 40, 60)):
            x[:, c] *= F32(f)
    if k >= 8:
        x[:, k - 2] = np.clip(x[:, k - 2], -5.9, 5.9)
        x[m - 1, k - 2] = np.nextafter(F32(6), F32(0))  # not an outlier
        x[:, k - 1] = np.clip(x[:, k - 1], -5.9, 5.9)
        x[0, k - 1] = F32(-6)  # an outlier: |x| >= 6
    if awkward and m > 2 and k > 5:
        x[1, 4] = np.nan
        x[2, 5] = -np.inf
    return x


LIN = """model lin {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w%s
  output %%y
}
"""

MM = """model mm {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = matmul %%x, @B
  output %%y
}
"""


def quantized(d, m, k, n, bias, rng, form="linear", threshold=None):
    """A one-layer model compiled with --outliers[=threshold] and with
    --dynamic: (float IR, outliers IR, dynamic IR, {name: const})."""
    w, b = linear_params(rng, n, k)
    w *= 3
    if form == "linear":
        model = write_model(d, "lin", LIN % (k, ", @b" if bias else ""),
                            {"w": w, "b": b} if bias else {"w": w})
    else:
        model = write_model(d, "mm", MM % k, {"B": w.T.copy()})
    qo, qd = os.path.join(d, "o.ir"), os.path.join(d, "d.ir")
    q8c(model, "--outliers" + ("" if threshold is None else "=%g" % threshold), "-o", qo)
    q8c(model, "--dynamic", "-o", qd)
    consts = q8test.read_safetensors(os.path.join(d, "o.safetensors"))
    return model, qo, qd, consts


def run_ir(ir, x, d, tag):
    xi, yo = os.path.join(d, "x-%s.npy" % tag), os.path.join(d, "y-%s.npy" % tag)
    np.save(xi, x)
    q8c("run", ir, "-i", xi, "-o", yo)
    return np.load(yo)


# ---- 1. semantics ----

def test_semantics(t, rng):
    for m, k, n, bias, form in [(5, 12, 7, True, "linear"), (9, 40, 33, False, "linear"),
                                (3, 64, 16, False, "matmul"), (16, 300, 70, True, "linear")]:
        d = q8test.tmpdir()
        model, qo, qd, c = quantized(d, m, k, n, bias, rng, form)
        label = "%s %dx%dx%d%s" % (form, m, k, n, " bias" if bias else "")
        nodes = q8test.parse_ir(open(qo).read())["nodes"]
        ops = [(nd["op"], [o[1] for o in nd["operands"]], nd["attrs"]) for nd in nodes]
        wt_name = "B" if form == "matmul" else "w.T"
        wq_name = "B.T.q" if form == "matmul" else "w.q"
        t.check("%s: one qlinear_outl x, Wq, w_scale, W^T f32%s {threshold = 6}" % (
                label, ", b" if bias else ""),
                len(ops) == 1 and ops[0][0] == "qlinear_outl"
                and ops[0][1][1:4] == [wq_name, wq_name[:-2] + ".scale", wt_name]
                and ops[0][2].get("threshold") == 6, str(ops))
        wt = c[wt_name]
        orig = q8test.read_safetensors(model[:-3] + ".safetensors")
        t.check("%s: W^T is the float weight transposed" % label,
                wt.dtype == F32 and np.array_equal(wt, orig["B"] if form == "matmul"
                                                   else orig["w"].T))
        x = outlier_input(rng, m, k)
        got = run_ir(qo, x, d, "o")
        want = qlinear_outl(x, c[wq_name], c[wq_name[:-2] + ".scale"], wt,
                            c.get("b") if bias else None, 6)
        t.check("%s: the interpreter equals the numpy definition byte for byte" % label,
                got.tobytes() == want.tobytes(),
                "max diff %s" % np.nanmax(np.abs(got.astype(np.float64) - want)))
        clean = np.clip(rng.standard_normal((m, k)).astype(F32), -5.99, 5.99)
        t.check("%s: a batch without outliers gives qlinear_dyn's bytes" % label,
                run_ir(qo, clean, d, "c").tobytes() == run_ir(qd, clean, d, "cd").tobytes())
    # The threshold is the option's: at 100 the 20x and 40x columns of a
    # unit Gaussian are int8, at 6 f32.
    d = q8test.tmpdir()
    model, qo, qd, c = quantized(d, 4, 16, 8, True, rng, threshold=100)
    t.check("--outliers=100 writes {threshold = 100}", "{threshold = 100}" in open(qo).read(),
            open(qo).read())
    x = outlier_input(rng, 4, 16, awkward=False)
    t.check("--outliers=100: the numpy definition at 100",
            run_ir(qo, x, d, "t").tobytes() ==
            qlinear_outl(x, c["w.q"], c["w.scale"], c["w.T"], c["b"], 100).tobytes())


# ---- 2. generated code ----

SHAPES = [(1, 1, 1), (3, 5, 7), (17, 31, 33), (8, 64, 48), (5, 100, 19), (29, 16, 130),
          (4, 300, 260)]
A64 = {(3, 5, 7), (17, 31, 33)}


def test_codegen(chk, rng):
    for i, (m, k, n) in enumerate(SHAPES):
        d = q8test.tmpdir()
        bias = i % 2 == 0
        _, qo, _, _ = quantized(d, m, k, n, bias, rng)
        label = "qlinear_outl %dx%dx%d%s" % (m, k, n, "" if bias else " no bias")
        x = outlier_input(rng, m, k)
        if m == 1 and k == 1:
            x[:] = 40  # the only column is an outlier
        chk.run(label, qo, ak.save_inputs(d, {"x": x}), ("y",), m, (m, k, n) in A64)
        if k > 1:
            clean = {"x": np.clip(rng.standard_normal((m, k)), -5, 5).astype(F32)}
            chk.run(label + " no outliers", qo, ak.save_inputs(d, clean), ("y",), m, False)


REF_OK = ("q8_ref_outl_detect", "q8_ref_outl_correct")
REF_NOT = ("q8_ref_qlinear_dyn", "q8_ref_qlinear_outl")


def test_variants(t, rng):
    """Every variant's module: the int8 GEMM on its kernels (its multiply
    instruction), the detection and correction as calls, no whole-op
    reference call."""
    d = q8test.tmpdir()
    _, qo, _, _ = quantized(d, 6, 40, 24, True, rng)
    targets = q8test.list_targets(ak.Q8C)
    for v in targets:
        if v.name not in ak.MULTIPLY:
            continue
        ll, asm = os.path.join(d, "m.ll"), os.path.join(d, "m.s")
        r1 = q8c(qo, "--batch", 6, "--target=" + v.name, "--emit=llvm", "-o", ll, check=False)
        r2 = q8c(qo, "--batch", 6, "--target=" + v.name, "--emit=asm", "-o", asm, check=False)
        if not t.check("qlinear_outl %s: compiles" % v.name, r1.returncode == 0 and
                       r2.returncode == 0, r1.stderr + r2.stderr):
            continue
        text = open(ll).read()
        t.check("qlinear_outl %s: calls %s, not %s" % (v.name, ", ".join(REF_OK), ", ".join(REF_NOT)),
                all(re.search(r"call .*@%s\b" % c, text) for c in REF_OK)
                and not any(re.search(r"@%s\b" % c, text) for c in REF_NOT), "")
        t.check("qlinear_outl %s: kernels multiply with /%s/" % (v.name, ak.MULTIPLY[v.name]),
                re.search(ak.MULTIPLY[v.name], open(asm).read()) is not None, "")


# ---- 3. accuracy with outliers that appear only at run time ----

MODEL = """model ffn {
  weights "WEIGHTS"
  input %x : f32[?, 64]
  %h = linear %x, @w1, @b1
  %a = gelu %h
  %y = linear %a, @w2, @b2
  output %y
}
"""


def test_accuracy(t, rng):
    d = q8test.tmpdir()
    w1, b1 = linear_params(rng, 256, 64)
    w2, b2 = linear_params(rng, 64, 256)
    model = write_model(d, "ffn", MODEL, {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    fit, test = os.path.join(d, "fit.npy"), os.path.join(d, "test.npy")
    np.save(fit, rng.standard_normal((256, 64)).astype(F32))
    x = rng.standard_normal((128, 64)).astype(F32)
    x[:, [7, 30, 51]] *= np.array([20, 40, 60], F32)
    np.save(test, x)
    ref = os.path.join(d, "ref.npy")
    q8c("run", model, "-i", test, "-o", ref)
    ref = np.load(ref)
    figs = {}
    for tag, opts in (("static", ["--calib", fit]), ("dynamic", ["--dynamic"]),
                      ("outliers", ["--outliers=6"])):
        ir, out = os.path.join(d, tag + ".ir"), os.path.join(d, tag + ".npy")
        q8c(model, *opts, "-o", ir)
        q8c("run", ir, "-i", test, "-o", out)
        figs[tag] = q8test.sqnr_db(ref, np.load(out))
    print("  ffn 64-256-64, 3 input columns x20/x40/x60 at run time only: static %.2f dB, "
          "--dynamic %.2f dB, --outliers=6 %.2f dB" % (figs["static"], figs["dynamic"],
                                                        figs["outliers"]))
    t.check("--outliers=6 beats --dynamic by more than 10 dB (%.2f vs %.2f)"
            % (figs["outliers"], figs["dynamic"]), figs["outliers"] > figs["dynamic"] + 10)
    t.check("--outliers=6 beats static int8 by more than 20 dB (%.2f vs %.2f)"
            % (figs["outliers"], figs["static"]), figs["outliers"] > figs["static"] + 20)
    t.check("--outliers=6 reaches 40 dB (%.2f)" % figs["outliers"], figs["outliers"] >= 40)
    # the per-layer report names the op and its input form
    r = q8test.run(ak.Q8C, model, "--outliers", "--calib", test, "--report", "-q", "-o",
                   os.path.join(d, "rep.ir"))
    t.check("--report: qlinear_outl layers, 'f32->u8 (per row) + f32 outliers'",
            r.stdout.count("qlinear_outl") == 2 and "f32->u8 (per row) + f32 outliers" in r.stdout,
            r.stdout)


# ---- 4. usage ----

def test_usage(t):
    d = q8test.tmpdir()
    model = write_model(d, "lin", LIN % (4, ""), {"w": np.ones((3, 4), F32)})
    for opt, want in (("--outliers=0", "q8c: error: --outliers takes a threshold > 0, got '0'\n"),
                      ("--outliers=x", "q8c: error: --outliers takes a threshold > 0, got 'x'\n"),
                      ("--outliers=-6", "q8c: error: --outliers takes a threshold > 0, got '-6'\n"),
                      ("--outliers=", "q8c: error: --outliers takes a threshold > 0, got ''\n")):
        r = q8test.run(ak.Q8C, model, opt, check=False)
        t.check("usage error: %s" % opt, r.returncode == 2 and r.stderr == want + HINT, r.stderr)
    bad = os.path.join(d, "bad.ir")
    with open(bad, "w") as f:
        f.write("""model bad {
  input %x : f32[?, 2]
  %y = qlinear_outl %x, @wq, @ws, @wt {threshold = 0}
  output %y
}
""")
    # A threshold of 0 in the IR is an error of the verifier (with @wq etc.
    # undefined the parser stops first, so give it constants).
    wts = os.path.join(d, "bad.safetensors")
    q8test.write_safetensors(wts, {"wq": np.ones((3, 2), np.int8), "ws": np.ones(3, F32),
                                   "wt": np.ones((2, 3), F32)})
    with open(bad, "w") as f:
        f.write("""model bad {
  weights "bad.safetensors"
  input %x : f32[?, 2]
  %y = qlinear_outl %x, @wq, @ws, @wt {threshold = 0}
  output %y
}
""")
    r = q8test.run(ak.Q8C, "run", bad, "-i", os.path.join(d, "nothing.npy"), check=False)
    t.check("threshold 0 in the IR: an error at the attribute",
            r.returncode != 0 and "bad.ir:4:40: error: threshold must be a positive finite number"
            in r.stderr, r.stderr)
    with open(bad, "w") as f:
        f.write("""model bad {
  weights "bad.safetensors"
  input %x : f32[?, 2]
  %y = qlinear_outl %x, @wq, @ws, @ws {threshold = 6}
  output %y
}
""")
    r = q8test.run(ak.Q8C, "run", bad, "-i", os.path.join(d, "nothing.npy"), check=False)
    t.check("W^T of the wrong shape: an error at the operand",
            r.returncode != 0 and "bad.ir:4:35: error: qlinear_outl: @ws is f32[3] but must be the "
            "f32 transpose of @wq i8[3, 2]" in r.stderr, r.stderr)


def main():
    if not ak.Q8C:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    t = q8test.Tally()
    rng = np.random.default_rng(18)
    test_semantics(t, rng)
    test_accuracy(t, rng)
    test_usage(t)
    test_variants(t, rng)
    test_codegen(ak.Check(t), rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
