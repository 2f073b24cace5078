"""test_reduce_range: --reduce-range (7-bit weights, docs/quantization.md,
"Reduced range"), which lets AVX2 without VNNI run every int8 GEMM in its
vpmaddubsw form.

usage: test_reduce_range.py /path/to/q8c

1. The quantized IR of examples/mlp: every int8 weight in [-63, 63] and each
   output channel's largest |q| exactly 63 (its scale max|w| / 63); without
   the option, 127.
2. The form the AVX2 kernels take (assembly): examples/mlp and the tiny
   GPT-2 without the option have no vpmaddubsw (their weight pairs could
   saturate: the widened vpmaddwd form); with it they do, and so does a
   qmatmul of run-time operands with b_bits = 7 (and not without).
3. qmatmul with b_bits = 7 on every operand form (u8/i8 x u8/i8, f32
   quantized in the entry) over full-range inputs, so the clamp to the 7-bit
   window matters: byte for byte against the interpreter on every x86
   variant this CPU runs (.so and JIT), and AArch64 under qemu-user; a
   b_bits other than 7 or 8 is refused with its message.
4. The note on stderr when compiling for AVX2 without the option.
5. The tiny reference transformers (GPT-2, BERT, LLaMA), static and dynamic
   with --reduce-range: b_bits = 7 on every qmatmul of the static ones, the
   compiled models bit-exact against the interpreter on the x86 variants,
   and the accuracy cost (report SQNR with and without, `figure` lines)
   within 3 dB (static) / 4.5 dB (dynamic) of the 8-bit figure.
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
import test_attn_kernels as tak  # noqa: E402  (its models, inputs and Check)

Q8C = tak.Q8C
q8c = tak.q8c
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MLP = os.path.join(ROOT, "examples", "mlp")
GEN = os.path.join(ROOT, "examples", "transformers", "gen.py")


def weights_of(ir):
    """The int8 constants (the quantized weights) of a quantized IR file."""
    with open(ir) as f:
        text = f.read()
    m = re.search(r'weights\s+"([^"]+)"', text)
    path = os.path.join(os.path.dirname(ir), m.group(1))
    return {k: v for k, v in q8test.read_safetensors(path).items() if v.dtype == np.int8}


def test_weights(t):
    d = q8test.tmpdir()
    for rr, top in (([], 127), (["--reduce-range"], 63)):
        ir = os.path.join(d, "mlp%d.ir" % top)
        q8c(os.path.join(MLP, "mlp.ir"), "--calib", os.path.join(MLP, "calib.npy"), *rr,
            "-o", ir)
        ws = weights_of(ir)
        if not t.check("mlp %s: int8 weights" % (rr or "8-bit"), len(ws) >= 2, str(list(ws))):
            continue
        for name, w in ws.items():
            chan = np.abs(w.astype(np.int32)).reshape(w.shape[0], -1).max(1)
            t.check("mlp %s @%s: every channel's max |q| is %d" % (rr or "8-bit", name, top),
                    bool(np.all(chan == top)), "max per channel: %s" % sorted(set(chan))[:8])


def avx2_asm(t, label, ir, batch):
    asm = ir[:-3] + ".s"
    r = q8c(ir, "--batch", batch, "--target=avx2", "--emit=asm", "-o", asm, check=False)
    if not t.check("%s: compiles for avx2" % label, r.returncode == 0, r.stderr):
        return None
    with open(asm) as f:
        return f.read()


def expect_form(t, label, text, fast):
    if text is None:
        return
    n = len(re.findall(r"vpmaddubsw\s+%ymm", text))
    t.check("%s: avx2 kernels %s vpmaddubsw (%d)" % (label, "use" if fast else "have no", n),
            (n > 0) == fast, "")


def test_form(t):
    d = q8test.tmpdir()
    for rr in ([], ["--reduce-range"]):
        ir = os.path.join(d, "mlp%s.ir" % ("rr" if rr else ""))
        q8c(os.path.join(MLP, "mlp.ir"), "--calib", os.path.join(MLP, "calib.npy"), *rr,
            "-o", ir)
        expect_form(t, "mlp %s" % (rr or "8-bit"), avx2_asm(t, "mlp", ir, 4), bool(rr))
    # A qmatmul of run-time operands alone: 8-bit b may saturate, 7-bit not.
    for bits in (8, 7):
        ir = os.path.join(d, "pair%d.ir" % bits)
        with open(ir, "w") as f:
            f.write(pair_model(2, 9, 20, 12, bits, dyn=False))
        expect_form(t, "qmatmul b_bits = %d" % bits, avx2_asm(t, "qmatmul", ir, 2), bits == 7)


NOTE = ("q8c: note: avx2 (no VNNI): up to 2 of 2 int8 GEMMs run the widened vpmaddwd form "
        "(their 8-bit weight pairs could saturate vpmaddubsw), about half its speed; "
        "--reduce-range (7-bit weights) gives them vpmaddubsw at some accuracy "
        "(docs/quantization.md, \"Reduced range\")\n")


def test_note(t):
    """The note of driver/formnote.c: compiling examples/mlp (two int8
    layers) for avx2 first without the option; not with it, not with -q,
    not for a variant of another form; and --help names the option."""
    d = q8test.tmpdir()
    src, calib = os.path.join(MLP, "mlp.ir"), os.path.join(MLP, "calib.npy")
    so = os.path.join(d, "m.so")
    for label, args, want in (("avx2", ["--target=avx2"], NOTE),
                              ("avx2,generic", ["--target=avx2,generic"], NOTE),
                              ("avx2 --reduce-range", ["--target=avx2", "--reduce-range"], ""),
                              ("avx2 -q", ["--target=avx2", "-q"], ""),
                              ("generic", ["--target=generic"], ""),
                              ("avx512vnni,avx2", ["--target=avx512vnni,avx2"], "")):
        r = q8c(src, "--calib", calib, *args, "-o", so, check=False)
        t.check("note, %s: %s" % (label, "the note" if want else "none"),
                r.returncode == 0 and r.stderr == want, r.stderr)
    help_text = q8c("--help").stdout
    t.check("--help names --reduce-range", "--reduce-range" in help_text and
            "7-bit weights" in help_text, "")


def pair_model(h, m, k, n, bits, dyn=True):
    """test_attn_kernels' model of every qmatmul form, b_bits = bits on each
    static one (without qmatmul_dyn unless dyn)."""
    text = tak.pair_model(h, m, k, n).replace(", dtype = ", ", b_bits = %d, dtype = " % bits)
    if not dyn:
        text = "\n".join(ln for ln in text.split("\n") if "%dd" not in ln)
    return text


def test_pairs(chk, rng):
    shapes = [("2x[2,3,5]x[5,7]", 2, 2, 3, 5, 7, True), ("1x[3,13,17]x[17,31]", 1, 3, 13, 17, 31,
                                                         False),
              ("2x[1,17,64]x[64,33]", 2, 1, 17, 64, 33, True),
              ("1x[1,29,48]x[48,100]", 1, 1, 29, 48, 100, False)]
    outs = [o for o in tak.OUTPUTS if o != "dd"]
    for label, bsz, h, m, k, n, on_a64 in shapes:
        d = q8test.tmpdir()
        ir = os.path.join(d, "pair.ir")
        with open(ir, "w") as f:
            f.write(pair_model(h, m, k, n, 7, dyn=False))
        inputs = tak.save_inputs(d, tak.pair_inputs(rng, bsz, h, m, k, n))
        chk.run("qmatmul b_bits = 7 " + label, ir, inputs, outs, bsz, on_a64)
    # The refusal.
    d = q8test.tmpdir()
    ir = os.path.join(d, "bad.ir")
    with open(ir, "w") as f:
        f.write(pair_model(1, 2, 3, 4, 6, dyn=False))
    inputs = tak.save_inputs(d, tak.pair_inputs(rng, 1, 1, 2, 3, 4))
    named = [a for nm, p in inputs.items() for a in ("-i", "%s=%s" % (nm, p))]
    r = q8c("run", ir, *named, *[a for o in outs for a in ("-o", "%s=%s" % (
        o, os.path.join(d, o + ".npy")))], check=False)
    chk.t.check("b_bits = 6 refused", r.returncode != 0 and
                "qmatmul: b_bits must be 7 or 8, not 6" in r.stderr, r.stderr)


def report_sqnr(ir, args, d, t=None):
    r = q8c(ir, *args, "--report=json", "-o", os.path.join(d, "rep.ir"))
    rep = json.loads(r.stdout)
    if t is not None:
        want = "--reduce-range" in args
        t.check("report: reduce_range %s" % want, rep["options"].get("reduce_range") is want and
                rep["options"]["weights"] == "s8-per-channel", json.dumps(rep["options"]))
    return [o for o in rep["outputs"] if o["name"] == "logits"][0]["sqnr_db"]


def test_transformers(t):
    runs = [v.name for v in q8test.list_targets(Q8C) if v.arch == "x86_64" and v.runs_here]
    for arch in ("gpt2", "bert", "llama"):
        d = q8test.tmpdir()
        q8test.run(sys.executable, GEN, arch, "tiny", d)
        with open(os.path.join(d, "manifest.json")) as f:
            full = json.load(f)["models"]["full"]
        src, calib = os.path.join(d, full["ir"]), os.path.join(d, full["calib"])
        inputs = [a for n, p in full["inputs"].items() for a in ("-i", "%s=%s" % (
            n, os.path.join(d, p)))]
        for scheme, args, slack in (("static", ["--calib", calib], 3.0),
                                    ("dynamic", ["--dynamic"], 4.5)):
            label = "%s %s --reduce-range" % (arch, scheme)
            s8 = report_sqnr(src, args + (["--calib", calib] if scheme == "dynamic" else []), d, t)
            s7 = report_sqnr(src, args + ["--reduce-range"] +
                             (["--calib", calib] if scheme == "dynamic" else []), d, t)
            print("figure %s %s SQNR 8-bit %.2f dB, --reduce-range %.2f dB" % (
                arch, scheme, s8, s7))
            t.check("%s: report SQNR %.2f dB within %g dB of 8-bit's %.2f" % (
                label, s7, slack, s8), s7 >= s8 - slack and s7 < s8 + 0.5, "")
            qir = os.path.join(d, "%s_%s_rr.ir" % (arch, scheme))
            q8c(src, *args, "--reduce-range", "-o", qir)
            with open(qir) as f:
                nodes = q8test.parse_ir(f.read())["nodes"]
            qmm = [nd for nd in nodes if nd["op"] == "qmatmul"]
            if scheme == "static":
                t.check("%s: b_bits = 7 on all %d qmatmul" % (label, len(qmm)), len(qmm) > 0 and
                        all(nd["attrs"].get("b_bits") == 7 for nd in qmm),
                        str([nd["attrs"].get("b_bits") for nd in qmm]))
            ref = os.path.join(d, "ref.npy")
            q8c("run", qir, *inputs, "-o", "logits=" + ref)
            batch = np.load(ref).shape[0]
            so = os.path.join(d, "m.so")
            q8c(qir, "--batch", batch, "--target=" + ",".join(runs), "-o", so)
            for isa in runs:
                for how in ("aot", "jit"):
                    got = os.path.join(d, "got-%s-%s.npy" % (isa, how))
                    extra = [so] if how == "aot" else [qir, "--jit", "--target=" + isa]
                    r = q8c("run", *extra, *inputs, "-o", "logits=" + got,
                            env={"Q8_ISA": isa}, check=False)
                    if t.check("%s %s %s runs" % (label, isa, how), r.returncode == 0, r.stderr):
                        ok, why = tak.a64.same_bytes(ref, got)
                        t.check("%s %s %s bit-exact vs interpreter" % (label, isa, how), ok, why)
            if arch == "gpt2" and scheme == "static":
                expect_form(t, label, avx2_asm(t, label, qir, batch), True)
                q8 = os.path.join(d, "g8.ir")
                q8c(src, *args, "-o", q8)
                expect_form(t, "gpt2 static 8-bit", avx2_asm(t, "gpt2 8-bit", q8, batch), False)


def main():
    if not Q8C:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    t = q8test.Tally()
    rng = np.random.default_rng(7)
    test_weights(t)
    test_form(t)
    test_note(t)
    test_pairs(tak.Check(t), rng)
    test_transformers(t)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
