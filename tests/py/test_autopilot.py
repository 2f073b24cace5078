"""test_autopilot: the accuracy remedies on models with activation outliers
(issue 18): --smooth[=ALPHA], --calib-method=auto, --target-sqnr=DB and
--max-top1-drop=P.

Usage: python3 tests/py/test_autopilot.py /path/to/q8c

Two models, each in two forms computing the same function in float:

  * mlp: 32 -> 64 -> relu -> 64 -> relu -> 10 (torch.nn.Linear init). The
    outlier form scales 4 of the first hidden layer's channels by 60 (rows of
    fc1's weight and bias) and divides the matching columns of fc2's weight
    by 60, so %a1 = relu(fc1) has 4 channels 60x the rest.
  * block: a transformer-like block on x[?, 8, 32]: layernorm, two linears
    from it (a gated MLP: gelu(ln Wa^T) * (ln Wb^T)), a linear back to 32 and
    the residual add. The outlier form multiplies 3 channels of the
    layernorm's gamma and beta by 40 and divides the matching columns of Wa
    and Wb by 40, as LLMs' layernorms do.

Calibration on 192 Gaussian samples (fit.npy); figures on 128 others
(test.npy) the compiler never saw: the int8 model (q8c run of the quantized
IR, the reference interpreter) against the float model (q8c run of the
float IR), output SQNR in float64. Checked:

  * --smooth rewrites only constants (new names NAME.smooth, visible in
    --print-after=smooth and in --dump-dir's 04-smooth.ir), notes one line
    per smoothed activation, and the smoothed float model's outputs equal
    the original's within 1e-5 relative (max |diff| / max |y|); folded into
    fc1 through relu (mlp) and into layernorm gamma and beta (block), s as
    docs/quantization.md defines it (recomputed here from the dump);
  * on the outlier forms, default int8 loses more than 10 dB against the
    forms without outliers, and --smooth comes within 3 dB of them;
  * --calib-method=auto chooses per activation (a note each, the decisions
    in --report) and is no worse than minmax on the test samples;
  * --target-sqnr=40 meets 40 dB on the test samples, keeping some layers in
    f32 where int8 alone cannot (the report marks them "kept in f32" and the
    decisions say why); --max-top1-drop=0 keeps top-1 on the check set;
  * rmsnorm feeding a matmul by a constant and a linear: smoothing folds
    into gamma and B's rows, the float function kept, int8 gaining > 10 dB;
  * a budget that even f32 cannot meet is an error with its exact text;
  * bad option values are usage errors with their exact text.

The figures (default int8, each remedy) are printed for the closing note.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8test import Tally, pytorch_linear, run, sqnr_db, tmpdir, write_safetensors, read_safetensors  # noqa: E402

HINT = "Try 'q8c --help' for more information.\n"

MLP = """model mlp {{
  weights "{weights}"
  input %x : f32[?, 32]
  %h1 = linear %x, @fc1.weight, @fc1.bias
  %a1 = relu %h1
  %h2 = linear %a1, @fc2.weight, @fc2.bias
  %a2 = relu %h2
  %y = linear %a2, @fc3.weight, @fc3.bias
  output %y
}}
"""

BLOCK = """model block {{
  weights "{weights}"
  input %x : f32[?, 8, 32]
  %ln = layernorm %x, @ln.gamma, @ln.beta {{eps = 1e-5}}
  %u = linear %ln, @wa.weight, @wa.bias
  %g = gelu %u
  %v = linear %ln, @wb.weight, @wb.bias
  %p = mul %g, %v
  %o = linear %p, @wo.weight, @wo.bias
  %y = add %x, %o
  output %y
}}
"""


RMS = """model rms {{
  weights "{weights}"
  input %x : f32[?, 16]
  %r = rmsnorm %x, @g {{eps = 1e-6}}
  %u = matmul %r, @B
  %v = linear %r, @W, @b
  %y = add %u, %v
  output %y
}}
"""


def make_rms(rng, d):
    """rmsnorm feeding a matmul by a constant and a linear; 2 of gamma's
    channels scaled by 30, compensated in B's rows and W's columns."""
    t = {"g": (1 + 0.1 * rng.standard_normal(16)).astype(np.float32)}
    t["W"], t["b"] = pytorch_linear(rng, 16, 24)
    t["B"] = pytorch_linear(rng, 16, 24)[0].T.copy()
    t["g"][[2, 9]] *= 30
    t["B"][[2, 9], :] /= 30
    t["W"][:, [2, 9]] /= 30
    return write_model(d, "rms", RMS, t)


def make_mlp(rng, d):
    t = {}
    for name, (n_in, n_out) in {"fc1": (32, 64), "fc2": (64, 64), "fc3": (64, 10)}.items():
        t[name + ".weight"], t[name + ".bias"] = pytorch_linear(rng, n_in, n_out)
    out = dict(t)
    ch = [3, 17, 40, 51]
    out["fc1.weight"] = t["fc1.weight"].copy()
    out["fc1.bias"] = t["fc1.bias"].copy()
    out["fc2.weight"] = t["fc2.weight"].copy()
    out["fc1.weight"][ch] *= 60
    out["fc1.bias"][ch] *= 60
    out["fc2.weight"][:, ch] /= 60
    return write_model(d, "mlp", MLP, t), write_model(d, "mlp_outliers", MLP, out)


def make_block(rng, d):
    t = {"ln.gamma": (1 + 0.1 * rng.standard_normal(32)).astype(np.float32),
         "ln.beta": (0.1 * rng.standard_normal(32)).astype(np.float32)}
    for name, (n_in, n_out) in {"wa": (32, 64), "wb": (32, 64), "wo": (64, 32)}.items():
        t[name + ".weight"], t[name + ".bias"] = pytorch_linear(rng, n_in, n_out)
    out = {k: v.copy() for k, v in t.items()}
    ch = [5, 12, 27]
    out["ln.gamma"][ch] *= 40
    out["ln.beta"][ch] *= 40
    out["wa.weight"][:, ch] /= 40
    out["wb.weight"][:, ch] /= 40
    return write_model(d, "block", BLOCK, t), write_model(d, "block_outliers", BLOCK, out)


def write_model(d, name, text, tensors):
    weights = os.path.join(d, name + ".safetensors")
    write_safetensors(weights, tensors)
    path = os.path.join(d, name + ".ir")
    with open(path, "w") as f:
        f.write(text.format(weights=weights))
    return path


class Case:
    """A model, its samples, and the float model's outputs on the test set."""

    def __init__(self, q8c, d, name, model, shape, rng):
        self.q8c, self.d, self.name, self.model = q8c, d, name, model
        self.fit = os.path.join(d, name + "-fit.npy")
        self.test = os.path.join(d, name + "-test.npy")
        np.save(self.fit, rng.standard_normal((192,) + shape).astype(np.float32))
        np.save(self.test, rng.standard_normal((128,) + shape).astype(np.float32))
        self.ref = self.outputs(model)

    def outputs(self, ir):
        out = os.path.join(self.d, "out.npy")
        run(self.q8c, "run", ir, "-i", self.test, "-o", out)
        return np.load(out)

    def compile(self, tag, *opts, check=True):
        """(quantized IR path, CompletedProcess)."""
        qir = os.path.join(self.d, "%s-%s.ir" % (self.name, tag))
        r = run(self.q8c, self.model, "--calib", self.fit, *opts, "-o", qir, check=check)
        return qir, r

    def sqnr(self, qir):
        return sqnr_db(self.ref, self.outputs(qir))


def rel_diff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def kept_layers(q8c, case, qir):
    """Layers the quantized IR leaves in f32: linear ops still there."""
    return sum(1 for line in open(qir) if " = linear " in line)


def main():
    q8c = sys.argv[1]
    t = Tally()
    rng = np.random.default_rng(18)
    d = tmpdir()
    mlp, mlp_out = make_mlp(rng, d)
    block, block_out = make_block(rng, d)
    cases = {
        "mlp": Case(q8c, d, "mlp", mlp, (32,), np.random.default_rng(1)),
        "mlp_outliers": Case(q8c, d, "mlp_outliers", mlp_out, (32,), np.random.default_rng(1)),
        "block": Case(q8c, d, "block", block, (8, 32), np.random.default_rng(2)),
        "block_outliers": Case(q8c, d, "block_outliers", block_out, (8, 32),
                               np.random.default_rng(2)),
    }
    t.check("the outlier forms compute the same function in float",
            rel_diff(cases["mlp_outliers"].ref, cases["mlp"].ref) < 1e-5
            and rel_diff(cases["block_outliers"].ref, cases["block"].ref) < 1e-5)

    figures = {}

    # ---- default int8, and each remedy ----
    remedies = [("int8", []), ("smooth", ["--smooth"]), ("auto", ["--calib-method=auto"]),
                ("dynamic", None), ("target40", ["--target-sqnr=40"])]
    for name, case in cases.items():
        for tag, opts in remedies:
            if opts is None:
                qir = os.path.join(d, "%s-dynamic.ir" % name)
                r = run(q8c, case.model, "--dynamic", "-o", qir)
            else:
                qir, r = case.compile(tag, *opts)
            figures[name, tag] = (case.sqnr(qir), kept_layers(q8c, case, qir),
                                  os.path.getsize(qir[:-3] + ".safetensors"), r.stderr)

    print("\nfigures (output SQNR dB on 128 test samples; layers in f32; constants bytes):")
    for name in cases:
        row = ["%-15s" % name]
        for tag, _ in remedies:
            s, k, size, _ = figures[name, tag]
            row.append("%s %6.2f" % (tag, s) + (" (%d f32, %d B)" % (k, size) if tag == "target40" else ""))
        print("  " + "  ".join(row))
    print()

    for base in ("mlp", "block"):
        clean = figures[base, "int8"][0]
        out = figures[base + "_outliers", "int8"][0]
        smooth = figures[base + "_outliers", "smooth"][0]
        t.check("%s: outliers cost default int8 more than 10 dB (%.2f -> %.2f)" % (base, clean, out),
                out < clean - 10)
        t.check("%s: --smooth is within 3 dB of the model without outliers (%.2f vs %.2f)"
                % (base, smooth, clean), smooth >= clean - 3)
        auto = figures[base + "_outliers", "auto"][0]
        t.check("%s: --calib-method=auto no worse than minmax on the test samples (%.2f vs %.2f)"
                % (base, auto, out), auto >= out - 0.5)
        for form in (base, base + "_outliers"):
            s, k, _, err = figures[form, "target40"]
            t.check("%s: --target-sqnr=40 meets 40 dB on samples it did not calibrate on (%.2f, "
                    "%d layers in f32)" % (form, s, k), s >= 40, err)
            t.check("%s: --target-sqnr=40 says it met the budget" % form,
                    "q8c: note: autopilot: --target-sqnr=40 met with " in err, err)

    check_smoothing(t, q8c, d, cases)
    check_rmsnorm(t, q8c, d)
    check_transformers(t, q8c)
    check_reports(t, q8c, d, cases)
    check_errors(t, q8c, d, cases)
    sys.exit(t.finish())


def check_smoothing(t, q8c, d, cases):
    # The float model smoothed: stop after smooth and run it.
    for name, folded in (("mlp_outliers", "into linear %h1 through relu"),
                         ("block_outliers", "into layernorm %ln gamma and beta")):
        case = cases[name]
        dumps = os.path.join(d, name + "-dumps")
        sm, r = case.compile("smoothed", "--smooth", "--stop-after=smooth", "--dump-dir", dumps)
        t.check("%s: the smoothed float model's outputs equal the original's within 1e-5"
                % name, rel_diff(case.outputs(sm), case.ref) < 1e-5,
                str(rel_diff(case.outputs(sm), case.ref)))
        notes = [l for l in r.stderr.splitlines() if l.startswith("q8c: note: smooth: ")]
        t.check("%s: one note per smoothed activation, saying where it is folded" % name,
                len(notes) >= 1 and folded in notes[0], r.stderr)
        text = open(sm).read()
        t.check("%s: the smoothed constants are renamed NAME.smooth" % name,
                ".smooth" in text, text)
        t.check("%s: --dump-dir writes 04-smooth.ir" % name,
                os.path.exists(os.path.join(dumps, "04-smooth.ir")), " ".join(os.listdir(dumps)))
        r2 = run(q8c, case.model, "--calib", case.fit, "--smooth", "--print-after=smooth",
                 "--stop-after=smooth", "-q")
        t.check("%s: --print-after=smooth shows the rewritten IR" % name,
                "; *** IR after smooth ***" in r2.stderr and ".smooth" in r2.stderr, r2.stderr)

    # s recomputed: the mlp's first smoothed activation is %a1 (fc1 -> relu
    # -> fc2): s_j = max|a1_j|^0.5 / max_n |W2[n, j]|^0.5 over the fit samples.
    case = cases["mlp_outliers"]
    orig = read_safetensors(os.path.join(d, "mlp_outliers.safetensors"))
    x = np.load(case.fit).astype(np.float64)
    a1 = np.maximum(x @ orig["fc1.weight"].T.astype(np.float64) + orig["fc1.bias"], 0)
    s = np.sqrt(np.abs(a1).max(axis=0)) / np.sqrt(np.abs(orig["fc2.weight"]).max(axis=0))
    sm = read_safetensors(os.path.join(d, "mlp_outliers-dumps", "04-smooth.safetensors"))
    w1, b1 = sm.get("fc1.weight.smooth"), sm.get("fc1.bias.smooth")
    ok = (w1 is not None and b1 is not None
          and np.allclose(w1, orig["fc1.weight"] / s[:, None], rtol=1e-5, atol=0)
          and np.allclose(b1, orig["fc1.bias"] / s, rtol=1e-5, atol=0))
    t.check("mlp_outliers: fc1's rows and bias divided by s = max|a1|^0.5 / max|W2|^0.5", bool(ok),
            str(sorted(sm)))
    # alpha changes s: --smooth=0 divides by 1/max|W| only.
    sm0, _ = case.compile("alpha0", "--smooth=0", "--stop-after=smooth", "-q")
    t.check("--smooth=0 keeps the float function too",
            rel_diff(case.outputs(sm0), case.ref) < 1e-5)


def check_rmsnorm(t, q8c, d):
    case = Case(q8c, d, "rms", make_rms(np.random.default_rng(5), d), (16,),
                np.random.default_rng(6))
    sm, r = case.compile("smoothed", "--smooth", "--stop-after=smooth")
    t.check("rmsnorm: smoothing folds into gamma, for a matmul by a constant and a linear",
            "folded into rmsnorm %r gamma" in r.stderr and "(16 channels, 2 layers)" in r.stderr
            and "@g.smooth" in open(sm).read() and "@B.smooth" in open(sm).read(), r.stderr)
    t.check("rmsnorm: the smoothed float model's outputs equal the original's within 1e-5",
            rel_diff(case.outputs(sm), case.ref) < 1e-5)
    plain = case.sqnr(case.compile("int8", "-q")[0])
    smooth = case.sqnr(case.compile("smooth", "--smooth", "-q")[0])
    print("  rms (rmsnorm -> matmul, linear; 2 channels x30): int8 %.2f dB, --smooth %.2f dB"
          % (plain, smooth))
    t.check("rmsnorm: --smooth gains more than 10 dB (%.2f -> %.2f)" % (plain, smooth),
            smooth > plain + 10)


# ---- the reference transformers with compensated outliers (item 5) ----

GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                   "transformers", "gen.py")
OUT_CH, OUT_F = [5, 23, 41], [20.0, 40.0, 60.0]


def _rows(w, name, factors, off=0):
    """Output channels OUT_CH (+ off) of linear `name` times factors."""
    for j, f in zip(OUT_CH, factors):
        w[name + ".weight"][off + j, :] *= f
        if name + ".bias" in w:
            w[name + ".bias"][off + j] *= f


def _norm(w, name, factors):
    """Channels OUT_CH of norm `name`'s gamma (and beta) times factors."""
    for key in (name + ".weight", name + ".bias"):
        if key in w:
            for j, f in zip(OUT_CH, factors):
                w[key][j] *= f


def _cols(w, name, factors):
    for j, f in zip(OUT_CH, factors):
        w[name + ".weight"][:, j] /= f


def outlier_transform(arch, w, layers, d):
    """Item 5's transformation, the float function unchanged: 3 hidden
    channels scaled by 20, 40, 60 where they are made, compensated in the
    consumers' input columns. Norms (their gamma and beta) feeding only
    linears: gpt2 ln_1, ln_2; llama both norms of each block and the final
    one (lm_head). Attention: V's output channels (rows of the V projection,
    of gpt2's fused c_attn) scaled, the output projection's columns divided,
    since softmax(QK^T) V is linear in V: every arch. BERT's norms also feed
    the residual adds, so only its V is transformed."""
    w = {k: v.copy() for k, v in w.items()}
    f = OUT_F
    for i in range(layers):
        if arch == "gpt2":
            p = "h.%d." % i
            _norm(w, p + "ln_1", f)
            _cols(w, p + "attn.c_attn", f)
            _rows(w, p + "attn.c_attn", f, 2 * d)
            _cols(w, p + "attn.c_proj", f)
            _norm(w, p + "ln_2", f)
            _cols(w, p + "mlp.c_fc", f)
        elif arch == "llama":
            p = "layers.%d." % i
            _norm(w, p + "input_layernorm", f)
            for n in ("q_proj", "k_proj", "v_proj"):
                _cols(w, p + "self_attn." + n, f)
            _rows(w, p + "self_attn.v_proj", f)
            _cols(w, p + "self_attn.o_proj", f)
            _norm(w, p + "post_attention_layernorm", f)
            _cols(w, p + "mlp.gate_proj", f)
            _cols(w, p + "mlp.up_proj", f)
        else:
            p = "encoder.layer.%d." % i
            _rows(w, p + "attention.self.value", f)
            _cols(w, p + "attention.output.dense", f)
    if arch == "llama":
        _norm(w, "norm", f)
        _cols(w, "lm_head", f)
    return w


def check_transformers(t, q8c):
    """gen.py's tiny gpt2, bert and llama without gamma outliers
    (--outlier-gamma 1), and their compensated outlier forms: default int8
    collapses, --smooth comes back within 3 dB of the untransformed model
    (smoothing the norms and, through attention, the V projections)."""
    rows = []
    for arch in ("gpt2", "bert", "llama"):
        d = tmpdir()
        r = subprocess.run([sys.executable, GEN, arch, "tiny", d, "--outlier-gamma", "1",
                            "--no-ref"], capture_output=True, text=True, timeout=900)
        if not t.check("%s: gen.py writes the model" % arch, r.returncode == 0, r.stderr):
            continue
        man = json.load(open(os.path.join(d, "manifest.json")))
        m = man["models"]["full"]
        ir, calib = os.path.join(d, m["ir"]), os.path.join(d, m["calib"])
        ins = [a for n, f in m["inputs"].items() for a in ("-i", "%s=%s" % (n, os.path.join(d, f)))]
        w = read_safetensors(os.path.join(d, arch + ".safetensors"))
        write_safetensors(os.path.join(d, "outl.safetensors"),
                          outlier_transform(arch, w, man["config"]["layers"], man["config"]["d"]))
        tir = os.path.join(d, "outl.ir")
        with open(tir, "w") as f:
            f.write(open(ir).read().replace('"%s.safetensors"' % arch, '"outl.safetensors"'))

        def logits(src, tag):
            out = os.path.join(d, "y-%s.npy" % tag)
            run(q8c, "run", src, *ins, "-o", "logits=" + out)
            return np.load(out)

        ref = logits(ir, "ref")
        t.check("%s: the outlier form computes the same function in float" % arch,
                rel_diff(logits(tir, "reft"), ref) < 1e-5)
        fig, err = {}, {}
        for tag, model, opts in (("untransformed", ir, ["--calib", calib]),
                                 ("int8", tir, ["--calib", calib]),
                                 ("smooth", tir, ["--calib", calib, "--smooth"]),
                                 ("dynamic", tir, ["--dynamic"]),
                                 ("outliers", tir, ["--outliers=6"])):
            qir = os.path.join(d, "q-%s.ir" % tag)
            r = run(q8c, model, *opts, "-o", qir)
            fig[tag], err[tag] = sqnr_db(ref, logits(qir, tag)), r.stderr
        rows.append((arch, fig))
        t.check("%s: the outliers cost default int8 more than 10 dB (%.2f -> %.2f)"
                % (arch, fig["untransformed"], fig["int8"]),
                fig["int8"] < fig["untransformed"] - 10)
        t.check("%s: --smooth is within 3 dB of the model without outliers (%.2f vs %.2f)"
                % (arch, fig["smooth"], fig["untransformed"]),
                fig["smooth"] >= fig["untransformed"] - 3)
        t.check("%s: --outliers=6 is better than --dynamic (%.2f vs %.2f)"
                % (arch, fig["outliers"], fig["dynamic"]), fig["outliers"] > fig["dynamic"])
        vproj = {"gpt2": "linear %h0.qkv outputs [128, 192) through attention (V)",
                 "bert": "linear %l0.v outputs [0, 64) through attention (V)",
                 "llama": "linear %l0.v outputs [0, 64) through attention (V)"}[arch]
        notes = [l for l in err["smooth"].splitlines() if l.startswith("q8c: note: smooth: ")]
        t.check("%s: smoothing folds attention's output projection input into %s"
                % (arch, vproj), any(l.endswith("folded into " + vproj) for l in notes),
                err["smooth"])
        if arch == "bert":
            check_bert_clones(t, q8c, tir, calib, ref, logits, d)
    print("\ntransformers with compensated outliers (output SQNR dB vs the float model, "
          "held-out input):")
    print("  %-6s %14s %9s %9s %9s %13s" % ("arch", "untransformed", "int8", "--smooth",
                                              "--dynamic", "--outliers=6"))
    for arch, f in rows:
        print("  %-6s %14.2f %9.2f %9.2f %9.2f %13.2f" % (arch, f["untransformed"], f["int8"],
                                                          f["smooth"], f["dynamic"],
                                                          f["outliers"]))
    print()


def check_bert_clones(t, q8c, tir, calib, ref, logits, d):
    """Post-LN BERT: each layernorm also feeds a residual add, so smoothing
    copies it for the linear consumers (%x.0.smooth) and smooths the copy;
    the add keeps the original."""
    sm = os.path.join(d, "smoothed.ir")
    r = run(q8c, tir, "--calib", calib, "--smooth", "--stop-after=smooth", "-o", sm)
    text = open(sm).read()
    t.check("bert: 4 norms copied for their linear consumers, said in a note",
            "q8c: note: smooth: 4 norms also feeding other ops copied for their linear "
            "consumers (NAME.smooth)\n" in r.stderr, r.stderr)
    t.check("bert: the copy %x.0.smooth, with smoothed gamma and beta, feeds q, k and v; the "
            "residual add keeps %x.0",
            re.search(r"%x\.0\.smooth : f32\[\?, 16, 64\] = layernorm %e\.1, "
                      r"@embeddings\.LayerNorm\.weight\.smooth, "
                      r"@embeddings\.LayerNorm\.bias\.smooth", text) is not None
            and all(re.search(r"%%l0\.%s : [^=]+ = linear %%x\.0\.smooth, " % v, text)
                    for v in "qkv")
            and re.search(r"%l0\.ar : [^=]+ = add %l0\.ao, %x\.0\n", text) is not None, text)
    t.check("bert: the smoothed float model (with the copies) computes the same function",
            rel_diff(logits(sm, "smoothed"), ref) < 1e-5)


def check_reports(t, q8c, d, cases):
    case = cases["block_outliers"]
    r = run(q8c, case.model, "--calib", case.fit, "--smooth", "--calib-method=auto",
            "--report=json", "-q", "-o", os.path.join(d, "rep.ir"))
    rep = json.loads(r.stdout)
    dec = rep.get("decisions", [])
    t.check("--report lists what smoothing and auto calibration decided",
            any(x.startswith("smooth %ln: alpha 0.5, 32 channels") for x in dec)
            and any(x.startswith("calibrate %") and " auto chose " in x for x in dec), str(dec))
    t.check("--report's options line says calibration auto",
            rep["options"]["calib_method"] == "auto", str(rep["options"]))
    r = run(q8c, case.model, "--calib", case.fit, "--target-sqnr=40", "--report", "-q", "-o",
            os.path.join(d, "rep2.ir"))
    t.check("--report: the autopilot's decision per layer and the size",
            "\ndecisions:\n" in r.stdout and "autopilot %o: " in r.stdout
            and "autopilot: --target-sqnr=40 met with " in r.stdout and "model size: " in r.stdout,
            r.stdout)
    r = run(q8c, case.model, "--calib", case.fit, "--smooth", "--report=html", "-q", "-o",
            os.path.join(d, "rep4.ir"))
    t.check("--report=html has the decisions",
            '<pre id="decisions">smooth %ln: alpha 0.5, 32 channels' in r.stdout, r.stdout[-2000:])
    case = cases["mlp_outliers"]
    qir, r = case.compile("keepw", "--smooth", "--keep-float=@fc2.weight", "-q")
    text = open(qir).read()
    t.check("--keep-float of a weight that smoothing renames keeps its layer in f32",
            "= linear %a1, @fc2.weight.smooth" in text and "keep_float = 1" in text, text)
    r = run(q8c, case.model, "--calib", case.fit, "--max-top1-drop=0", "--report=json", "-q",
            "-o", os.path.join(d, "rep3.ir"))
    rep = json.loads(r.stdout)
    t.check("--max-top1-drop=0: the decisions say it was met",
            any(x.startswith("autopilot: --max-top1-drop=0 met with ") for x in rep["decisions"]),
            str(rep.get("decisions")))


def check_errors(t, q8c, d, cases):
    case = cases["mlp_outliers"]
    qir, r = case.compile("too-much", "--smooth", "--target-sqnr=300", check=False)
    lines = r.stderr.splitlines()
    t.check("a budget f32 cannot meet is an error",
            r.returncode == 1 and lines and lines[-1].startswith(
                case.model + ": error: --target-sqnr=300 cannot be met even with every layer in f32 (with "
                "the options as given): output SQNR ") and lines[-1].endswith(
                " dB, top-1 drop 0.00% on the 48 check samples"), r.stderr)
    bad = [
        (["--smooth=2"], "q8c: error: --smooth takes an alpha in [0, 1], got '2'\n"),
        (["--smooth="], "q8c: error: --smooth takes an alpha in [0, 1], got ''\n"),
        (["--smooth=x"], "q8c: error: --smooth takes an alpha in [0, 1], got 'x'\n"),
        (["--target-sqnr=abc"], "q8c: error: --target-sqnr needs a number of dB, got 'abc'\n"),
        (["--max-top1-drop=101"],
         "q8c: error: --max-top1-drop needs a percentage in [0, 100], got '101'\n"),
        (["--max-top1-drop=-1"],
         "q8c: error: --max-top1-drop needs a percentage in [0, 100], got '-1'\n"),
        (["--calib-method=autox"],
         "q8c: error: unknown calibration method 'autox' (minmax, ma-minmax, percentile:P, "
         "entropy, mse, auto)\n"),
    ]
    for opts, want in bad:
        r = run(q8c, case.model, "--calib", case.fit, *opts, check=False)
        t.check("usage error: %s" % " ".join(opts),
                r.returncode == 2 and r.stderr == want + HINT, r.stderr)
    r = run(q8c, case.model, "--smooth", check=False)
    t.check("--smooth without --calib is an error",
            r.returncode == 1 and "%s:5:3: error: --smooth needs calibration samples to measure "
            "%%a1 and the other activations it smooths: give --calib FILE\n" % case.model
            in r.stderr, r.stderr)
    r = run(q8c, case.model, "--target-sqnr=40", check=False)
    t.check("--target-sqnr without --calib is an error",
            r.returncode == 1 and r.stderr.endswith(
                "error: --target-sqnr=40 measures the int8 model on calibration samples: give "
                "--calib FILE\n"), r.stderr)
    one = os.path.join(d, "one.npy")
    np.save(one, np.zeros((1, 32), np.float32))
    r = run(q8c, case.model, "--calib", one, "--calib-method=auto", check=False)
    t.check("--calib-method=auto on one sample is an error",
            r.returncode == 1 and r.stderr.endswith(
                "error: --calib-method=auto holds back a quarter of the samples to choose on: "
                "it needs at least 2, %s has 1\n" % one), r.stderr)


if __name__ == "__main__":
    main()
