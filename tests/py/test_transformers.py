"""test_transformers: the reference transformers of examples/transformers
(GPT-2-, BERT- and LLaMA-style, the "tiny" size) end to end.

usage: test_transformers.py /path/to/q8c [--size small] [--arch gpt2,bert,llama]

The test suite runs the tiny size. `--size small` (GPT-2-small-like: d 768,
12 heads, 12 layers, T 128; run by hand, it takes tens of minutes) checks
the same properties on one held-out sequence and 2 calibration samples,
on the x86 variants only (qemu would take hours), without the decode step,
and prints the report's figures instead of holding them to the tiny bars.

examples/transformers/gen.py writes each model's IR, its seeded random
weights, calibration samples, a held-out input and PyTorch's float outputs.
For each architecture:

1. Float: the interpreter (`q8c run`) against PyTorch, max|err| / max|ref|
   over the whole output <= 1e-5.
2. Static (--calib) and dynamic (--dynamic) int8:
   - the report (--report=json, on the calibration samples): the output's
     SQNR, cosine and top-1 agreement with the float model above bars;
   - the integer interpreter's output on the held-out input against
     PyTorch's (SQNR, top-1), printed;
   - the compiled model, AOT (.so run through `q8c run`) and JIT, on every
     x86 variant this CPU runs, and AOT on every AArch64 variant under
     qemu-user: bytes identical to the integer interpreter's.
3. GPT-2 and LLaMA: the decode step with a KV cache (ARCH_step.ir), fed
   PyTorch's keys and values of the first P = T - 1 positions and token P,
   against the full-window model's last position: float within 1e-5
   relative; int8 (static, calibrated on the step's own samples) within the
   quantization error (SQNR and next-token agreement above bars), and the
   compiled step bit-exact against the interpreter.

The figures are printed (`figure ...` lines) for the closing notes.
"""
import json
import os
import subprocess
import sys

import numpy as np

import q8test
from test_aarch64 import run_a64, why_cannot_link, why_cannot_run

Q8C = None
GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                   "transformers", "gen.py")
TINY = os.path.join(os.path.dirname(GEN), "tiny")
FLOAT_REL = 1e-5

# Bars, below the measured figures (seed 0; the models have two outlier
# channels of gamma 6 in every norm, which per-tensor static activations
# pay for). Measured on the calibration samples (report) / held-out input:
#   gpt2  static 22.55 dB, top-1 0.912 / dynamic 30.56 dB, 0.980
#   bert  static 22.52 dB, top-1 0.969 / dynamic 29.92 dB, 0.969
#   llama static 18.26 dB, top-1 0.826 / dynamic 27.61 dB, 0.941
# A wrong scale, zero point or mask costs far more than the margin.
BARS = {
    ("gpt2", "static"): (19.0, 0.99, 0.80), ("gpt2", "dynamic"): (26.0, 0.998, 0.90),
    ("bert", "static"): (19.0, 0.99, 0.75), ("bert", "dynamic"): (26.0, 0.998, 0.75),
    ("llama", "static"): (15.0, 0.98, 0.70), ("llama", "dynamic"): (24.0, 0.995, 0.85),
}
# The decode step's int8 logits against the float full-window last position
# (16 rows), measured: gpt2 21.01 dB, next token 0.875; llama 18.91 dB, 1.0.
STEP_BARS = {"gpt2": (18.0, 0.75), "llama": (15.0, 0.75)}


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=3600)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)),
                                                       r.returncode, r.stderr))
    return r


def same_bits(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, "%s %s vs %s %s" % (a.dtype, a.shape, b.dtype, b.shape)
    same = a.tobytes() == b.tobytes()
    return same, "" if same else "max |diff| %g" % float(
        np.max(np.abs(a.astype(np.float64) - b)))


def rel_err(ref, x):
    ref = ref.astype(np.float64)
    return float(np.max(np.abs(ref - x)) / np.max(np.abs(ref)))


def top1(ref, x):
    return float(np.mean(np.argmax(ref, -1) == np.argmax(x, -1)))


class Model:
    """One model of a manifest: its IR, inputs (in the model's order, as
    gen.py writes them) and reference outputs."""

    def __init__(self, d, m):
        self.d = d
        self.ir = os.path.join(d, m["ir"])
        self.calib = os.path.join(d, m["calib"])
        self.inputs = [(n, os.path.join(d, f)) for n, f in m["inputs"].items()]
        self.ref = np.load(os.path.join(d, m["outputs"]["logits"]))
        self.batch = self.ref.shape[0]

    def in_args(self):
        return [a for n, f in self.inputs for a in ("-i", "%s=%s" % (n, f))]

    def run(self, src, tag, *extra, env=None):
        """Run `src` (IR or .so) on the held-out input; the logits, or the
        CompletedProcess of a failed run."""
        out = os.path.join(self.d, "y_%s.npy" % tag)
        r = q8c("run", src, *extra, *self.in_args(), "-o", "logits=" + out, env=env, check=False)
        return np.load(out) if r.returncode == 0 else r


def check_compiled(t, label, model, qir, want, runs, a64):
    """The compiled qir, AOT and JIT on each x86 variant in `runs`, AOT on
    each AArch64 variant under qemu: bytes equal to `want`."""
    so = qir[:-3] + ".so"
    q8c(qir, "--batch", model.batch, "--target=" + ",".join(runs), "-o", so)
    for isa in runs:
        for how in ("aot", "jit"):
            if how == "aot":
                got = model.run(so, "%s_%s_aot" % (label, isa), env={"Q8_ISA": isa})
            else:
                got = model.run(qir, "%s_%s_jit" % (label, isa), "--jit", "--target=" + isa)
            if not t.check("%s %s %s runs" % (label, isa, how), isinstance(got, np.ndarray),
                           getattr(got, "stderr", "")):
                continue
            ok, detail = same_bits(got, want)
            t.record("%s %s %s bit-exact vs interpreter" % (label, isa, how), ok, detail)
    if not a64:
        return
    if why_cannot_link():
        t.skip("%s aarch64" % label, why_cannot_link())
        return
    so64 = qir[:-3] + "-a64.so"
    r = q8c(qir, "--batch", model.batch, "--target=" + ",".join(a64), "-o", so64, check=False)
    if not t.check("%s: links for %s" % (label, ", ".join(a64)), r.returncode == 0, r.stderr):
        return
    if why_cannot_run():
        t.skip("%s aarch64 run" % label, why_cannot_run())
        return
    for isa in a64:
        out = os.path.join(model.d, "y_%s_%s.npy" % (label.replace(" ", "_"), isa))
        # run_model writes the outputs in the model's order: logits first.
        outs = [out] + [os.path.join(model.d, "extra%d.npy" % i)
                        for i in range(1, model.noutputs)]
        r = run_a64(so64, [f for _, f in model.inputs], outs,
                    env={"Q8_ISA": isa})
        if not t.check("%s %s (qemu) runs" % (label, isa),
                       r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                       r.stdout + r.stderr):
            continue
        ok, detail = same_bits(np.load(out), want)
        t.record("%s %s (qemu) bit-exact vs interpreter" % (label, isa), ok, detail)


def report(model, *args):
    """The report's figures for the logits output: (SQNR, cosine, top-1)."""
    r = q8c(model.ir, *args, "--report=json", "-o", os.path.join(model.d, "rep.ir"))
    rep = json.loads(r.stdout)
    out = [o for o in rep["outputs"] if o["name"] == "logits"][0]
    return out["sqnr_db"], out["cosine"], out["top1_agreement"]


def test_arch(t, arch, d, runs, a64, figures, small=False):
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    for m in ([] if small else man["models"].values()):
        # The tiny models' text is committed to be read; it must be gen.py's.
        with open(os.path.join(d, m["ir"])) as f, open(os.path.join(TINY, m["ir"])) as g:
            t.check("%s: examples/transformers/tiny/%s is what gen.py writes" % (arch, m["ir"]),
                    f.read() == g.read(), "regenerate it: gen.py %s tiny DIR" % arch)
    full = Model(d, man["models"]["full"])
    full.noutputs = 1
    yf = full.run(full.ir, "float")
    if not t.check("%s float runs" % arch, isinstance(yf, np.ndarray), getattr(yf, "stderr", "")):
        return
    e = rel_err(full.ref, yf)
    t.record("%s float = PyTorch: max|err|/max|ref| %.2e <= %g" % (arch, e, FLOAT_REL),
             e <= FLOAT_REL)
    for scheme in ("static", "dynamic"):
        args = ["--calib", full.calib] if scheme == "static" else ["--dynamic"]
        qir = os.path.join(d, "%s_%s.ir" % (arch, scheme))
        q8c(full.ir, *args, "-o", qir)
        sq, cos, agree = report(full, *args, *([] if scheme == "static" else
                                               ["--calib", full.calib]))
        bar = (-1e9, -1e9, -1e9) if small else BARS[(arch, scheme)]
        t.record("%s %s report: SQNR %.2f dB >= %g, cosine %.6f >= %g, top-1 %.3f >= %g" % (
            arch, scheme, sq, bar[0], cos, bar[1], agree, bar[2]),
            sq >= bar[0] and cos >= bar[1] and agree >= bar[2])
        yq = full.run(qir, "int_" + scheme)
        if not t.check("%s %s interpreter runs" % (arch, scheme), isinstance(yq, np.ndarray),
                       getattr(yq, "stderr", "")):
            continue
        hsq, _, hcos = q8test.stats(full.ref, yq)
        figures.append("figure %s %s: report (calib samples) SQNR %.2f dB, cosine %.6f, top-1 "
                       "%.3f; held-out vs PyTorch SQNR %.2f dB, cosine %.6f, top-1 %.3f" % (
                           arch, scheme, sq, cos, agree, hsq, hcos, top1(full.ref, yq)))
        check_compiled(t, "%s %s" % (arch, scheme), full, qir, yq, runs, a64)
    if "step" not in man["models"] or small:
        return
    step = Model(d, man["models"]["step"])
    step.noutputs = 1 + 2 * man["config"]["layers"]
    ys = step.run(step.ir, "step_float")
    if not t.check("%s step float runs" % arch, isinstance(ys, np.ndarray),
                   getattr(ys, "stderr", "")):
        return
    e = rel_err(step.ref, ys)
    t.record("%s step float = full window's last position: %.2e <= %g" % (arch, e, FLOAT_REL),
             e <= FLOAT_REL)
    qir = os.path.join(d, "%s_step_static.ir" % arch)
    q8c(step.ir, "--calib", step.calib, "-o", qir)
    yq = step.run(qir, "step_int")
    if not t.check("%s step static runs" % arch, isinstance(yq, np.ndarray),
                   getattr(yq, "stderr", "")):
        return
    sq, _, cos = q8test.stats(step.ref, yq)
    agree = top1(step.ref, yq)
    # The full-window int8 model's last position, for comparison.
    yfull = full.run(os.path.join(d, "%s_static.ir" % arch), "int_static_again")
    fsq, _, _ = q8test.stats(step.ref, yfull[:, -1:])
    bar = STEP_BARS[arch]
    t.record("%s step static vs float full window: SQNR %.2f dB >= %g, next token %.3f >= %g" % (
        arch, sq, bar[0], agree, bar[1]), sq >= bar[0] and agree >= bar[1])
    figures.append("figure %s kv-step static: last-position logits vs float full window SQNR "
                   "%.2f dB, cosine %.6f, next-token agreement %.3f (%d rows); full-window int8 "
                   "last position %.2f dB, next-token %.3f" % (
                       arch, sq, cos, agree, step.batch, fsq, top1(step.ref, yfull[:, -1:])))
    check_compiled(t, "%s step static" % arch, step, qir, yq, runs, a64)


def main():
    global Q8C
    args = sys.argv[1:]
    opts = dict(zip(args[1::2], args[2::2]))
    if len(args) % 2 != 1 or set(opts) - {"--size", "--arch"} or \
            opts.get("--size", "tiny") not in ("tiny", "small"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    Q8C = os.path.abspath(args[0])
    small = opts.get("--size") == "small"
    t = q8test.Tally()
    targets = q8test.list_targets(Q8C)
    runs = [v.name for v in targets if v.arch == "x86_64" and v.runs_here]
    a64 = [] if small else [v.name for v in targets if v.arch == "aarch64"]
    figures = []
    gen_args = ["small", "--ref", "--batch", "1", "--calib", "2"] if small else ["tiny"]
    for arch in opts.get("--arch", "gpt2,bert,llama").split(","):
        d = q8test.tmpdir()
        r = subprocess.run([sys.executable, GEN, arch, gen_args[0], d] + gen_args[1:],
                           capture_output=True, text=True, timeout=1800)
        if not t.check("%s: gen.py writes the model" % arch, r.returncode == 0, r.stderr):
            continue
        test_arch(t, arch, d, runs, a64, figures, small)
        for f in figures:
            print(f, flush=True)
        figures = []
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
