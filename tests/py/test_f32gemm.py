"""Bit-exactness of the vector f32 GEMM (codegen/f32gemm.c) against the
interpreter (ir/refops.c's q8_ref_linear and q8_ref_matmul: each output
summed in float32 over k in order, a multiply then an add, the bias last;
docs/float.md).

Shapes sweep the tails: N of 1, 3, 7, 17, 33 and 100 columns (under one
vector, past 16-column panels, every lane count of 16, 8 and 4), K of 1, 5,
19 and 64, and rows M = 1 (--batch 1), 7 x 3 and 5 x 2 (whole tiles of
6 or 12 rows, 2 on SSE2, and every count of rows left over). Nodes: linear with and
without a bias, a batched matmul [B, 2, M, K] x [B, 2, K, N], a matmul
broadcasting B's batch axis [B, 2, M, K] x [1, K, N], and one sharing one
[K, N] (the kernel's flattened path). Inputs hold signed zeros,
infinities, NaN, denormals and large magnitudes, so a reordered or fused
sum shows.

Every x86-64 variant that runs here runs the compiled library (AOT) and the
JIT (`q8c run --jit`); every AArch64 variant runs under qemu-user when the
cross toolchain and qemu are there (else skipped, with the reason). Each
output must equal the interpreter's bytes (on AArch64 a NaN matches any
NaN, as test_floatops.py says why). The assembly of every x86 variant must
multiply on its register width and contain no fused multiply-add.

Usage: test_f32gemm.py /path/to/q8c
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import write_model  # noqa: E402
from q8test import Tally, list_targets, tmpdir  # noqa: E402
import test_floatops as tf  # noqa: E402

Q8C = tf.Q8C
X86, A64, SYSROOT, A64_DIR = tf.X86, tf.A64, tf.SYSROOT, tf.A64_DIR
OUTPUTS = ["lin", "linnb", "mm", "mmb", "mms"]
# Every layer stays float (the compile would otherwise quantize them).
KEEP = "--keep-float=lin,linnb,mm,mmb,mms"

MODEL = """model g {
  weights "WEIGHTS"
  input %%x : f32[?, %(M)d, %(K)d]
  input %%p : f32[?, 2, %(M)d, %(K)d]
  input %%q : f32[?, 2, %(K)d, %(N)d]
  input %%r : f32[1, %(K)d, %(N)d]
  input %%s : f32[%(K)d, %(N)d]
  %%lin = linear %%x, @w, @b
  %%linnb = linear %%x, @w
  %%mm = matmul %%p, %%q
  %%mmb = matmul %%p, %%r
  %%mms = matmul %%x, %%s
  output %(OUT)s
}
"""

SPECIAL = np.array([0.0, -0.0, 1e-40, -3e-39, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e4,
                    16777216.0, 1.0, -1.0], dtype=np.float32)


def fill(rng, shape, specials):
    a = (rng.standard_normal(shape) * 2).astype(np.float32)
    if specials:
        flat = a.reshape(-1)
        n = min(len(SPECIAL), flat.size // 3)
        flat[:n] = SPECIAL[:n]
    return a


def main():
    t = Tally()
    rng = np.random.default_rng(16)
    reason = tf.a64_reason()
    cases = [(1, 1), (5, 3), (19, 7), (1, 17), (64, 33), (19, 100), (5, 16)]
    asm_done = False
    for k, n in cases:
        for batch, m in ((1, 1), (3, 7), (2, 5)):
            label = "K=%d N=%d M=%d B=%d" % (k, n, m, batch)
            d = tmpdir()
            tensors = {"w": fill(rng, (n, k), True), "b": fill(rng, (n,), False)}
            text = MODEL % {"M": m, "K": k, "N": n,
                            "OUT": ", ".join("%" + o for o in OUTPUTS)}
            path = write_model(d, "g", text, tensors)
            specials = (k, n) != (19, 100)  # one all-finite case
            ins = {"x": fill(rng, (batch, m, k), specials),
                   "p": fill(rng, (batch, 2, m, k), specials),
                   "q": fill(rng, (batch, 2, k, n), specials),
                   "r": fill(rng, (1, k, n), False), "s": fill(rng, (k, n), False)}
            in_args, in_files = [], []
            for name, arr in ins.items():
                p = os.path.join(d, name + ".npy")
                np.save(p, arr)
                in_args += ["-i", "%s=%s" % (name, p)]
                in_files.append(p)

            def outs(tag):
                return {o: os.path.join(d, "%s-%s.npy" % (o, tag)) for o in OUTPUTS}

            def out_args(files):
                return [a for o, f in files.items() for a in ("-o", "%s=%s" % (o, f))]

            if not asm_done and n == 33:
                check_asm(t, d, path)
                asm_done = True
            ref = outs("ref")
            r = tf.q8c("run", path, *in_args, *out_args(ref))
            if not t.check("%s interpreter runs" % label, r.returncode == 0, r.stderr):
                continue
            so = os.path.join(d, "g.so")
            r = tf.q8c(path, "--batch", batch, KEEP, "--target=" + ",".join(v.name for v in X86),
                       "-o", so)
            if not t.check("%s compiles for every x86 variant" % label, r.returncode == 0,
                           r.stderr):
                continue
            for v in X86:
                if not v.runs_here:
                    t.skip("%s %s" % (label, v.name), "this CPU lacks it")
                    continue
                got = outs(v.name)
                r = tf.q8c("run", so, *in_args, *out_args(got), env={"Q8_ISA": v.name})
                if t.check("%s %s runs" % (label, v.name), r.returncode == 0, r.stderr):
                    compare(t, "%s %s" % (label, v.name), ref, got)
                got = outs(v.name + "-jit")
                r = tf.q8c("run", path, "--jit", "--target=" + v.name, *in_args,
                           *out_args(got))
                if t.check("%s %s JIT runs" % (label, v.name), r.returncode == 0, r.stderr):
                    compare(t, "%s %s JIT" % (label, v.name), ref, got)
            if reason:
                t.skip("%s aarch64" % label, reason)
                continue
            so64 = os.path.join(d, "g64.so")
            r = tf.q8c(path, "--batch", batch, KEEP, "--target=" + ",".join(A64), "-o", so64)
            if not t.check("%s compiles for every aarch64 variant" % label,
                           r.returncode == 0, r.stderr):
                continue
            for isa in A64:
                got = outs(isa)
                cmd = ["qemu-aarch64", "-cpu", "max", "-L", SYSROOT,
                       os.path.join(A64_DIR, "run_model"), so64]
                cmd += [a for p in in_files for a in ("-i", p)]
                cmd += [a for o in OUTPUTS for a in ("-o", got[o])]
                e = dict(os.environ)
                e["Q8_ISA"] = isa
                r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)
                if t.check("%s %s runs under qemu" % (label, isa),
                           r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                           r.stdout + r.stderr):
                    compare(t, "%s %s" % (label, isa), ref, got, any_nan=True)
    return t.finish()


def compare(t, label, ref, got, any_nan=False):
    for o in OUTPUTS:
        want, have = np.load(ref[o]), np.load(got[o])
        same = have.dtype == want.dtype and have.shape == want.shape and \
            have.tobytes() == want.tobytes()
        if not same and any_nan and have.shape == want.shape:
            hb, wb = have.view(np.uint32), want.view(np.uint32)
            same = bool(np.all((hb == wb) | (np.isnan(have) & np.isnan(want))))
        detail = ""
        if not same and have.shape == want.shape:
            bad = np.flatnonzero(have.view(np.uint32) != want.view(np.uint32))
            detail = "%d elements differ, first at %d: %r vs %r" % (
                len(bad), bad[0], have.reshape(-1)[bad[0]], want.reshape(-1)[bad[0]])
        elif not same:
            detail = "shape %r vs %r" % (have.shape, want.shape)
        t.check("%s %%%s bit-exact" % (label, o), same, detail)


# Each x86 variant's GEMM multiplies on its own register width: 16, 8, 8
# and 4 floats (isa.def's nr). Must name every x86 row.
MUL = {"avx512vnni": ("vmulps", "zmm"), "avxvnni": ("vmulps", "ymm"),
       "avx2": ("vmulps", "ymm"), "generic": ("mulps", "xmm")}


def check_asm(t, d, path):
    t.check("the multiply table names every x86 variant",
            set(MUL) == {v.name for v in X86}, str(sorted(v.name for v in X86)))
    for v in X86:
        asm = os.path.join(d, v.name + ".s")
        r = tf.q8c(path, "--batch", 3, KEEP, "--target=" + v.name, "-o", asm)
        if not t.check("%s compiles to assembly" % v.name, r.returncode == 0, r.stderr):
            continue
        with open(asm) as f:
            text = f.read()
        insn, reg = MUL.get(v.name, ("?", "?"))
        t.check("%s has its f32gemm task function" % v.name,
                (".f32gemm_" in text) and ("_" + v.name) in text)
        lines = [ln for ln in text.splitlines() if insn in ln.split("#")[0] and "%" + reg in ln]
        t.check("%s multiplies %s floats at a time (%s on %%%s)" % (
            v.name, {"zmm": 16, "ymm": 8, "xmm": 4}.get(reg, 0), insn, reg), bool(lines))
        t.check("%s fuses no multiply-add" % v.name, "vfmadd" not in text and
                "vfmsub" not in text and "vfnmadd" not in text)
        if reg == "xmm":
            t.check("%s uses no ymm/zmm register" % v.name,
                    "%ymm" not in text and "%zmm" not in text)


if __name__ == "__main__":
    sys.exit(main())
