"""test_attn_kernels: qmatmul, qmatmul_dyn and qlinear_dyn on the int8 GEMM
kernels (codegen/attention.c: the right operand packed at run time, the rows'
zero points and scales in the tile's epilogue, the vectorized per-row dynamic
quantization), byte for byte against the interpreter (`q8c run` on the IR).

usage: test_attn_kernels.py /path/to/q8c

1. qmatmul over a sweep of batch (heads) x M x K x N with 1, primes and
   non-multiples of every tile (4, 8, 16 channels; 4, 8, 16 K per step; the
   row tiles), each shape one model holding every operand form: u8 x u8 ->
   u8, i8 x i8 -> i8, u8 x i8 (nonzero zb) -> f32, i8 x u8 -> u8, f32 x f32
   (quantized in the entry) -> f32, and qmatmul_dyn on f32 with NaN, Inf,
   all-zero rows and rows of one sign. Attention's shapes too: Q K^T [?, H,
   T, hd] x [?, H, hd, T] and P V [?, H, T, T] x [?, H, T, hd] with causal
   softmax rows (zeros above the diagonal).
2. qlinear_dyn (`--dynamic` linear layers) over M x K x N, every other one
   without a bias, on inputs with NaN, Inf, zero rows and one-signed rows.

Each model runs on every x86 variant this CPU runs (the .so, and the JIT),
is compiled for the others (AVX512-VNNI, AVX-VNNI: their emitters run, LLVM
verifies the module), and on every AArch64 variant under qemu-user (skipped,
with the reason, without the cross toolchain or qemu).
"""
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
import test_aarch64 as a64  # noqa: E402  (its runner: compile, qemu, compare)
from q8models import linear_params, write_model  # noqa: E402

F32 = np.float32
Q8C = os.path.abspath(sys.argv[1]) if len(sys.argv) == 2 else None
q8c = a64.q8c


# ---- the models ----

def static_attrs(xs, xz, xd, bs, bz, bd, ys=None, yz=None, yd="f32"):
    a = "x_scale = %s, x_zero_point = %d, x_dtype = %s, b_scale = %s, b_zero_point = %d, " \
        "b_dtype = %s" % (xs, xz, xd, bs, bz, bd)
    if yd == "f32":
        return a + ", dtype = f32"
    return a + ", scale = %s, zero_point = %d, dtype = %s" % (ys, yz, yd)


def pair_model(h, m, k, n):
    """Every operand form of qmatmul, and qmatmul_dyn, on x [?, h, m, k] and
    b [?, h, k, n]."""
    xt, bt = "[?, %d, %d, %d]" % (h, m, k), "[?, %d, %d, %d]" % (h, k, n)
    return "\n".join([
        "model pair {",
        "  input %%xu : u8%s" % xt, "  input %%xi : i8%s" % xt, "  input %%xf : f32%s" % xt,
        "  input %%bu : u8%s" % bt, "  input %%bi : i8%s" % bt, "  input %%bf : f32%s" % bt,
        "  %%uu = qmatmul %%xu, %%bu {%s}" % static_attrs(0.05, 131, "u8", 0.07, 120, "u8",
                                                           0.9, 120, "u8"),
        "  %%ii = qmatmul %%xi, %%bi {%s}" % static_attrs(0.04, 0, "i8", 0.03, 0, "i8",
                                                           0.5, 0, "i8"),
        "  %%ui = qmatmul %%xu, %%bi {%s}" % static_attrs(0.02, 7, "u8", 0.06, 3, "i8"),
        "  %%iu = qmatmul %%xi, %%bu {%s}" % static_attrs(0.03, -5, "i8", 0.01, 255, "u8",
                                                           0.2, 3, "u8"),
        "  %%ff = qmatmul %%xf, %%bf {%s}" % static_attrs(0.021, 128, "u8", 0.019, 101, "u8"),
        "  %dd = qmatmul_dyn %xf, %bf",
        "  output %uu", "  output %ii", "  output %ui", "  output %iu", "  output %ff",
        "  output %dd",
        "}", ""])


OUTPUTS = ("uu", "ii", "ui", "iu", "ff", "dd")


def awkward_f32(rng, shape, causal=False):
    """Gaussian values with NaN, +-Inf, an all-zero row, a row of one sign
    and a large outlier; `causal`: rows of a causal softmax instead."""
    if causal:
        t = shape[-1]
        s = rng.standard_normal(shape).astype(F32) * 3
        s = np.where(np.tril(np.ones((shape[-2], t), bool)), s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(F32)
    x = (rng.standard_normal(shape) * 2).astype(F32)
    flat = x.reshape(-1, shape[-1])
    flat[0, 0] = np.nan
    if flat.shape[1] > 2:
        flat[0, 1], flat[0, 2] = np.inf, -np.inf
    if flat.shape[0] > 1:
        flat[1] = 0
    if flat.shape[0] > 2:
        flat[2] = np.abs(flat[2]) + 0.5
    if flat.shape[0] > 3:
        flat[3] = -np.abs(flat[3])
    if flat.shape[0] > 4:
        flat[4, -1] = 900.0
    return x


def save_inputs(d, arrays):
    """The arrays as .npy files: {name: path} in the model's input order."""
    paths = {}
    for name, a in arrays.items():
        paths[name] = os.path.join(d, name + ".npy")
        np.save(paths[name], a)
    return paths


class Check:
    def __init__(self, t):
        self.t = t
        targets = q8test.list_targets(Q8C)
        self.x86_runs = [v.name for v in targets if v.arch == "x86_64" and v.runs_here]
        self.x86_all = [v.name for v in targets if v.arch == "x86_64"]
        self.a64_link, self.a64_run = a64.why_cannot_link(), a64.why_cannot_run()

    def run(self, label, ir, inputs, outputs, batch, on_a64=False):
        """The interpreter's outputs, then every x86 variant: compiled; those
        that run, run (.so; the JIT on the best); with on_a64 every AArch64
        variant under qemu."""
        d = os.path.dirname(ir)
        named = [a for n, p in inputs.items() for a in ("-i", "%s=%s" % (n, p))]
        ref = {o: os.path.join(d, "ref-%s.npy" % o) for o in outputs}
        q8c("run", ir, *named, *[a for o, f in ref.items() for a in ("-o", "%s=%s" % (o, f))])
        so = os.path.join(d, "m.so")
        r = q8c(ir, "--batch", batch, "--target=" + ",".join(self.x86_all), "-o", so,
                check=False)
        if self.t.check("%s: compiles for %s" % (label, ",".join(self.x86_all)),
                        r.returncode == 0, r.stderr):
            for isa in self.x86_runs:
                for how in ("aot", "jit") if isa == self.x86_runs[0] else ("aot",):
                    got = {o: os.path.join(d, "%s-%s-%s.npy" % (o, isa, how)) for o in outputs}
                    src = so if how == "aot" else ir
                    extra = [] if how == "aot" else ["--jit", "--target=" + isa, "--batch", batch]
                    r = q8c("run", src, *extra, *named,
                            *[a for o, f in got.items() for a in ("-o", "%s=%s" % (o, f))],
                            env={"Q8_ISA": isa}, check=False)
                    if self.t.check("%s %s %s runs" % (label, isa, how), r.returncode == 0,
                                    r.stderr):
                        self.compare("%s %s %s" % (label, isa, how), ref, got)
        if on_a64:
            self.aarch64(label, ir, inputs, ref, batch)

    def compare(self, label, ref, got):
        bad = [o for o in ref if not a64.same_bytes(ref[o], got[o])[0]]
        self.t.check("%s: %d outputs bit-exact" % (label, len(ref)), not bad, "differ: %s" % ", ".join(
            "%s (%s)" % (o, a64.same_bytes(ref[o], got[o])[1]) for o in bad))

    def aarch64(self, label, ir, inputs, ref, batch):
        if self.a64_link:
            self.t.skip("%s: aarch64 .so" % label, self.a64_link)
            return
        d = os.path.dirname(ir)
        so = os.path.join(d, "a64.so")
        r = q8c(ir, "--batch", batch, "--target=" + ",".join(a64.ISAS), "-o", so, check=False)
        if not self.t.check("%s: links for %s" % (label, ",".join(a64.ISAS)), r.returncode == 0,
                            r.stderr):
            return
        if self.a64_run:
            self.t.skip("%s: aarch64 run" % label, self.a64_run)
            return
        for isa in a64.ISAS:
            got = {o: os.path.join(d, "%s-%s.npy" % (o, isa)) for o in ref}
            r = a64.run_a64(so, list(inputs.values()), list(got.values()), env={"Q8_ISA": isa})
            if self.t.check("%s %s runs" % (label, isa),
                            r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                            r.stdout + r.stderr):
                self.compare("%s %s" % (label, isa), ref, got)


# ---- 1. qmatmul and qmatmul_dyn ----

# (batch, heads, M, K, N): 1s, primes, tails of 4/8/16 channels and K steps,
# several row tiles; then attention's Q K^T and P V.
PAIR_SHAPES = [(1, 1, 1, 1, 1), (2, 2, 3, 5, 7), (1, 3, 13, 17, 31), (2, 1, 17, 64, 33),
               (3, 2, 9, 1, 16), (1, 1, 29, 48, 100)]
ATTN_SHAPES = [("QK^T", 2, 3, 24, 16, 24, False), ("PV causal", 2, 3, 24, 24, 16, True)]
A64_PAIRS = {(2, 2, 3, 5, 7), (2, 1, 17, 64, 33)}


def pair_inputs(rng, bsz, h, m, k, n, causal=False):
    xs, bs = (bsz, h, m, k), (bsz, h, k, n)
    return {
        "xu": rng.integers(0, 256, xs).astype(np.uint8),
        "xi": rng.integers(-128, 128, xs).astype(np.int8),
        "xf": awkward_f32(rng, xs, causal),
        "bu": rng.integers(0, 256, bs).astype(np.uint8),
        "bi": rng.integers(-128, 128, bs).astype(np.int8),
        "bf": awkward_f32(rng, bs),
    }


def test_pairs(chk, rng):
    cases = [("%dx[%d,%d,%d]x[%d,%d]" % (b, h, m, k, k, n), b, h, m, k, n, False,
              (b, h, m, k, n) in A64_PAIRS) for b, h, m, k, n in PAIR_SHAPES]
    cases += [(lab, b, h, m, k, n, c, True) for lab, b, h, m, k, n, c in ATTN_SHAPES]
    for label, bsz, h, m, k, n, causal, on_a64 in cases:
        d = q8test.tmpdir()
        ir = os.path.join(d, "pair.ir")
        with open(ir, "w") as f:
            f.write(pair_model(h, m, k, n))
        inputs = save_inputs(d, pair_inputs(rng, bsz, h, m, k, n, causal))
        chk.run("qmatmul " + label, ir, inputs, OUTPUTS, bsz, on_a64)


# ---- 2. qlinear_dyn ----

LINEAR_SHAPES = [(1, 1, 1), (3, 5, 7), (17, 31, 33), (8, 64, 48), (5, 100, 19), (29, 16, 130)]
A64_LINEAR = {(3, 5, 7), (17, 31, 33)}


def test_linear_dyn(chk, rng):
    for i, (m, k, n) in enumerate(LINEAR_SHAPES):
        for bias in (i % 2 == 0,):
            d = q8test.tmpdir()
            w, b = linear_params(rng, n, k)
            model = write_model(d, "lin", """model lin {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w%s
  output %%y
}
""" % (k, ", @b" if bias else ""), {"w": w * 3, "b": b} if bias else {"w": w * 3})
            ir = os.path.join(d, "q.ir")
            q8c(model, "--dynamic", "-o", ir)
            with open(ir) as f:
                ops = [nd["op"] for nd in q8test.parse_ir(f.read())["nodes"]]
            label = "qlinear_dyn %dx%dx%d%s" % (m, k, n, "" if bias else " no bias")
            if not chk.t.check(label + ": one qlinear_dyn", ops == ["qlinear_dyn"], str(ops)):
                continue
            inputs = save_inputs(d, {"x": awkward_f32(rng, (m, k))})
            chk.run(label, ir, inputs, ("y",), m, (m, k, n) in A64_LINEAR)


# ---- 3. no reference call left, and each variant's multiply ----

# What each variant's kernels for these layers must contain (its multiply),
# by variant name; a new row of codegen/isa.def must be added here.
MULTIPLY = {"avx512vnni": r"vpdpbusd\s+%zmm", "avxvnni": r"\{vex\}\s+vpdpbusd|vpdpbusd\s+%ymm",
            "avx2": r"vpmaddwd\s+%ymm", "generic": r"pmaddwd\s+%xmm",
            "aarch64-i8mm": r"\b(us|s)mmla\b", "aarch64-dotprod": r"\b(us|s)dot\b",
            "aarch64": r"\bsadalp\b"}
REF_CALLS = ("q8_ref_qmatmul", "q8_ref_qmatmul_dyn", "q8_ref_qlinear_dyn")


def test_no_reference(t, rng):
    """The compiled module of a model with every form calls none of the
    reference functions of these ops, on any variant, and each variant's
    assembly has its multiply instruction."""
    d = q8test.tmpdir()
    w, b = linear_params(rng, 24, 40)
    model = write_model(d, "lin", """model lin {
  weights "WEIGHTS"
  input %x : f32[?, 40]
  %y = linear %x, @w, @b
  output %y
}
""", {"w": w, "b": b})
    lin = os.path.join(d, "q.ir")
    q8c(model, "--dynamic", "-o", lin)
    pair = os.path.join(d, "pair.ir")
    with open(pair, "w") as f:
        f.write(pair_model(2, 9, 20, 12))
    targets = q8test.list_targets(Q8C)
    q8test.check_expectations(t, "multiply instruction", [v.name for v in targets], MULTIPLY)
    for v in targets:
        if v.name not in MULTIPLY:
            continue
        for label, ir in (("qmatmul/qmatmul_dyn", pair), ("qlinear_dyn", lin)):
            ll = os.path.join(d, "m.ll")
            asm = os.path.join(d, "m.s")
            r1 = q8c(ir, "--batch", 2, "--target=" + v.name, "--emit=llvm", "-o", ll, check=False)
            r2 = q8c(ir, "--batch", 2, "--target=" + v.name, "--emit=asm", "-o", asm, check=False)
            if not t.check("%s %s: compiles" % (label, v.name), r1.returncode == 0 and
                           r2.returncode == 0, r1.stderr + r2.stderr):
                continue
            with open(ll) as f:
                text = f.read()
            calls = [c for c in REF_CALLS if re.search(r"@%s\b" % c, text)]
            t.check("%s %s: no reference call" % (label, v.name), not calls, ", ".join(calls))
            with open(asm) as f:
                text = f.read()
            t.check("%s %s: kernels multiply with /%s/" % (label, v.name, MULTIPLY[v.name]),
                    re.search(MULTIPLY[v.name], text) is not None, "")


def main():
    if not Q8C:
        print(__doc__.strip().splitlines()[3], file=sys.stderr)
        return 2
    t = q8test.Tally()
    rng = np.random.default_rng(15)
    chk = Check(t)
    test_pairs(chk, rng)
    test_linear_dyn(chk, rng)
    test_no_reference(t, rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
