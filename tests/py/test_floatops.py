"""Bit-exactness of the vectorized float ops (codegen/floatops.c, vmath.c)
against the interpreter (ir/refops.c with ir/fmath.h): relu, gelu (erf and
tanh), sigmoid, tanh, silu, add/sub/mul/div (same shape, a row broadcast
like a bias, a literal scalar), softmax (last axis, causal, a middle axis),
layernorm, rmsnorm, and quantize + dequantize (u8 with ties to even at
x / scale = +-2.5, clamping, NaN to the zero point; i8), on rows of 1, 3, 7, 17, 33 and 100 elements (every
tail of 16, 8 and 4 lanes), with inputs that hold large magnitudes, the
clamping points of exp (89, -104), the branch points of erf and tanh,
denormals, signed zeros, infinities and NaN.

Every x86-64 variant of `q8c --list-targets` that runs here runs the
compiled model (the others are counted as skipped); every AArch64 variant
runs under qemu-user when the cross toolchain and qemu are there (else
skipped, with the reason). Each output must equal the interpreter's bytes
(on AArch64, NaN for NaN: compare() says why). The assembly of every x86
variant, runnable here or not, must compute on its vector width
(VECTOR_REGS).

Usage: test_floatops.py /path/to/q8c
"""
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import write_model  # noqa: E402
from q8test import Tally, list_targets, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
TARGETS = list_targets(Q8C)
X86 = [v for v in TARGETS if v.arch == "x86_64"]
A64 = [v.name for v in TARGETS if v.arch == "aarch64"]
A64_DIR = os.path.join(os.path.dirname(Q8C), "aarch64")
SYSROOT = "/usr/aarch64-linux-gnu"
BATCH = 5
INNER = 19  # the middle-axis softmax's inner extent: 16 + 3, 2 * 8 + 3, 4 * 4 + 3

OUTPUTS = ["relu", "gelu", "gelut", "sig", "th", "silu", "add", "sub", "mul", "div", "divs",
           "sm", "smc", "sma", "ln", "rms", "dqu", "dqi"]

MODEL = """model fo {
  weights "WEIGHTS"
  input %%x : f32[?, %(L)d]
  input %%x2 : f32[?, %(L)d]
  input %%sq : f32[?, %(L)d, %(L)d]
  input %%x3 : f32[?, %(L)d, %(I)d]
  %%relu = relu %%x
  %%gelu = gelu %%x
  %%gelut = gelu %%x {approximate = tanh}
  %%sig = sigmoid %%x
  %%th = tanh %%x
  %%silu = silu %%x
  %%add = add %%x, %%x2
  %%sub = sub %%x, @row
  %%mul = mul @row, %%x
  %%div = div %%x, %%x2
  %%divs = div %%x, 3
  %%sm = softmax %%x
  %%smc = softmax %%sq {causal = 1}
  %%sma = softmax %%x3 {axis = 1}
  %%ln = layernorm %%x, @gamma, @beta {eps = 1e-5}
  %%rms = rmsnorm %%x2, @gamma {eps = 1e-6}
  %%qu = quantize %%x {scale = 0.25, zero_point = 3, dtype = u8}
  %%dqu = dequantize %%qu {scale = 0.25, zero_point = 3}
  %%qi = quantize %%x2 {scale = 0.0625, zero_point = 0, dtype = i8}
  %%dqi = dequantize %%qi {scale = 0.0625, zero_point = 0}
  output %(OUT)s
}
"""

# Values where the arithmetic changes course, and the IEEE specials.
SPECIAL = np.array([0.0, -0.0, 1e-40, -1e-40, 1e-30, -3e-39, 0.625, -0.625, 0.62499994,
                    1.2374369, -1.2374369, 5.656854, -5.656854, 6.0, -6.0, 88.72, 89.0, 89.5,
                    -87.4, -103.9, -104.0, -110.0, 1e4, -1e4, 3e38, -3e38, np.inf, -np.inf,
                    np.nan], dtype=np.float32)


def inputs(rng, length):
    """x with the specials spread over its first rows (the last rows stay
    finite, so softmax and the norms give values, not only NaN), x2 random."""
    x = (rng.standard_normal((BATCH, length)) * 3).astype(np.float32)
    flat = x.reshape(-1)
    n = min(len(SPECIAL), (BATCH - 2) * length)
    flat[:n] = SPECIAL[:n]
    # A row of large finite values, to meet exp's clamping inside softmax.
    x[BATCH - 2] = rng.uniform(-120, 120, length).astype(np.float32)
    x2 = (rng.standard_normal((BATCH, length)) * 2).astype(np.float32)
    x2[0, 0] = -0.0
    sq = (rng.standard_normal((BATCH, length, length)) * 4).astype(np.float32)
    sq[0, 0, 0] = np.inf if length > 1 else sq[0, 0, 0]
    x3 = (rng.standard_normal((BATCH, length, INNER)) * 4).astype(np.float32)
    x3[1, 0, 2] = np.nan
    return {"x": x, "x2": x2, "sq": sq, "x3": x3}


def model(rng, length, d):
    tensors = {"row": rng.uniform(-2, 2, length).astype(np.float32),
               "gamma": rng.uniform(0.5, 1.5, length).astype(np.float32),
               "beta": rng.uniform(-0.5, 0.5, length).astype(np.float32)}
    text = MODEL % {"L": length, "I": INNER, "OUT": ", ".join("%" + o for o in OUTPUTS)}
    return write_model(d, "fo", text, tensors)


def q8c(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=300)


def a64_reason():
    if not shutil.which("aarch64-linux-gnu-gcc"):
        return "no aarch64 cross compiler"
    for f in ("libq8support.a", "run_model"):
        if not os.path.exists(os.path.join(A64_DIR, f)):
            return "no %s/%s" % (A64_DIR, f)
    if not shutil.which("qemu-aarch64"):
        return "no qemu-aarch64"
    if not os.path.isdir(os.path.join(SYSROOT, "lib")):
        return "no aarch64 libc in " + SYSROOT
    return None


def compare(t, label, ref, got, any_nan=False):
    """Bytes equal; with any_nan (AArch64 against the x86 interpreter), a NaN
    matches a NaN of other bits: an invalid operation (inf - inf, 0 * inf)
    gives the hardware's default NaN, 0xffc00000 on x86 and 0x7fc00000 on
    Arm, so only where each NaN is can be the same."""
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
        t.check("%s %%%s bit-exact" % (label, o), same, detail)


# The register width each x86 variant's float ops must use (qlanes of
# codegen/isa.def: 16, 8, 8, 4 floats), checked in the assembly, which also
# covers the variants this CPU cannot run. Must name every x86 row.
VECTOR_REGS = {"avx512vnni": "zmm", "avxvnni": "ymm", "avx2": "ymm", "generic": "xmm"}


def check_asm(t, d, path):
    """Each x86 variant's float-op functions (fo.RESULT.OP_ISA) compute on
    its own vector registers, and SSE2's on nothing wider."""
    t.check("the register table names every x86 variant",
            set(VECTOR_REGS) == {v.name for v in X86}, str(sorted(v.name for v in X86)))
    for v in X86:
        asm = os.path.join(d, v.name + ".s")
        r = q8c(path, "--batch", BATCH, "--target=" + v.name, "-o", asm)
        if not t.check("%s compiles to assembly" % v.name, r.returncode == 0, r.stderr):
            continue
        with open(asm) as f:
            text = f.read()
        # The softmax function's body (inlined into the entry at -O3, so the
        # whole text): its vdivps / divps on the variant's registers.
        reg = VECTOR_REGS.get(v.name, "?")
        want = "divps" if reg == "xmm" else "vdivps"
        lines = [ln for ln in text.splitlines() if want in ln and "%" + reg in ln]
        t.check("%s divides %d floats at a time (%s on %%%s)" % (
            v.name, {"zmm": 16, "ymm": 8, "xmm": 4}.get(reg, 0), want, reg), bool(lines))
        if reg == "xmm":
            t.check("%s uses no ymm/zmm register" % v.name,
                    "%ymm" not in text and "%zmm" not in text)


def main():
    t = Tally()
    rng = np.random.default_rng(15)
    reason = a64_reason()
    for length in (1, 3, 7, 17, 33, 100):
        d = tmpdir()
        path = model(rng, length, d)
        ins = inputs(rng, length)
        in_args = []
        in_files = []
        for name, arr in ins.items():
            p = os.path.join(d, name + ".npy")
            np.save(p, arr)
            in_args += ["-i", "%s=%s" % (name, p)]
            in_files.append(p)

        def outs(tag):
            return {o: os.path.join(d, "%s-%s.npy" % (o, tag)) for o in OUTPUTS}

        def out_args(files):
            return [a for o, f in files.items() for a in ("-o", "%s=%s" % (o, f))]

        if length == 33:
            check_asm(t, d, path)
        ref = outs("ref")
        r = q8c("run", path, *in_args, *out_args(ref))
        if not t.check("L=%d interpreter runs" % length, r.returncode == 0, r.stderr):
            continue
        so = os.path.join(d, "fo.so")
        r = q8c(path, "--batch", BATCH, "--target=" + ",".join(v.name for v in X86), "-o", so)
        if not t.check("L=%d compiles for every x86 variant" % length, r.returncode == 0,
                       r.stderr):
            continue
        for v in X86:
            if not v.runs_here:
                t.skip("L=%d %s" % (length, v.name), "this CPU lacks it")
                continue
            got = outs(v.name)
            r = q8c("run", so, *in_args, *out_args(got), env={"Q8_ISA": v.name})
            if t.check("L=%d %s runs" % (length, v.name), r.returncode == 0, r.stderr):
                compare(t, "L=%d %s" % (length, v.name), ref, got)
        if reason:
            t.skip("L=%d aarch64" % length, reason)
            continue
        so64 = os.path.join(d, "fo64.so")
        r = q8c(path, "--batch", BATCH, "--target=" + ",".join(A64), "-o", so64)
        if not t.check("L=%d compiles for every aarch64 variant" % length, r.returncode == 0,
                       r.stderr):
            continue
        for isa in A64:
            got = outs(isa)
            cmd = ["qemu-aarch64", "-cpu", "max", "-L", SYSROOT,
                   os.path.join(A64_DIR, "run_model"), so64]
            # run_model takes the inputs in the model's order, by position.
            cmd += [a for p in in_files for a in ("-i", p)]
            cmd += [a for o in OUTPUTS for a in ("-o", got[o])]
            e = dict(os.environ)
            e["Q8_ISA"] = isa
            r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)
            if t.check("L=%d %s runs under qemu" % (length, isa),
                       r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                       r.stdout + r.stderr):
                compare(t, "L=%d %s" % (length, isa), ref, got, any_nan=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
