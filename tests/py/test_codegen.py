"""End-to-end tests of the LLVM backend: compiled code, ahead of time (.so
through libq8rt) and in memory (q8c run --jit), must give output bytes
identical to the integer reference interpreter on every ISA variant this
machine can execute. Variants it cannot execute are still compiled, and
their assembly is checked for the intended instructions; the runtime's
refusal to run them is checked too, and each such case is counted as
skipped, with the reason.

The variants are the x86_64 rows of `q8c --list-targets` (codegen/isa.def),
not a list written here; which of them this CPU runs is what that says, and
the runtime must agree. Per-variant expectations (the instructions in the
assembly) are a table keyed by name that must cover every row.

Usage: test_codegen.py /path/to/q8c
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import (float_ops_model, linear_params, mlp_model, qforms,  # noqa: E402
                      quantize, transformer_ops_model, write_model)
from q8test import Tally, check_expectations, list_targets, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
TARGETS = [v for v in list_targets(Q8C) if v.arch == "x86_64"]
ISAS = [v.name for v in TARGETS]  # best first
RUNS_HERE = {v.name for v in TARGETS if v.runs_here}


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=300)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)),
                                                       r.returncode, r.stderr))
    return r


class Runner:
    """Compiles one quantized model every way and compares with the interpreter."""

    def __init__(self, tally):
        self.t = tally
        self.unavailable = {}  # isa -> the runtime's reason

    def check(self, label, model, calib, x, batch, extra=(), outputs=("y",), x_form=True):
        d = os.path.dirname(model)
        q_ir = os.path.join(d, "q.ir")
        args = [model] + (["--calib", calib] if calib else []) + list(extra)
        q8c(*args, "-o", q_ir)
        xpath = os.path.join(d, "x.npy")
        np.save(xpath, x)

        def outs(tag):
            return {o: os.path.join(d, "%s-%s.npy" % (o, tag)) for o in outputs}

        def out_args(files):
            return [a for o, f in files.items() for a in ("-o", "%s=%s" % (o, f))]

        ref = outs("ref")
        q8c("run", q_ir, "-i", xpath, *out_args(ref))
        so = os.path.join(d, "m.so")
        q8c(q_ir, "--batch", batch, "--target=" + ",".join(ISAS), "-o", so)
        self.compare(label, so, q_ir, xpath, ref, outs, out_args, outputs, [])

        # The quantized entry, on the input quantized as the model would:
        # the interpreter's run_quantized(quantize(x)) must be quantize(run(x))
        # exactly, and every variant must give the interpreter's bytes.
        with open(q_ir) as f:
            forms = qforms(f.read())
        xform = forms.get(("input", "x"))
        self.t.check("%s input %%x %s a quantized form" % (label, "has" if x_form else "lacks"),
                     (xform is not None) == x_form, str(forms))
        xq = quantize(x, xform) if xform else x
        xqpath = os.path.join(d, "xq.npy")
        np.save(xqpath, xq)
        qref = outs("qref")
        q8c("run", q_ir, "--quantized", "-i", xqpath, *out_args(qref))
        for o in outputs:
            form = forms.get(("output", o))
            want = quantize(np.load(ref[o]), form) if form else np.load(ref[o])
            have = np.load(qref[o])
            self.t.check("%s quantized entry %%%s%s = %s" % (
                label, o, "" if form else " (no quantized form)",
                "quantize(f32 entry)" if form else "f32 entry"),
                have.dtype == want.dtype and have.tobytes() == want.tobytes())
        self.compare(label + " quantized", so, q_ir, xqpath, qref, outs, out_args, outputs,
                     ["--quantized"])

    def compare(self, label, so, q_ir, xpath, ref, outs, out_args, outputs, flags):
        for isa in ISAS:
            for how in ("aot", "jit"):
                got = outs(isa + "-" + how)
                if how == "aot":
                    r = q8c("run", so, *flags, "-i", xpath, *out_args(got),
                            env={"Q8_ISA": isa}, check=False)
                else:
                    r = q8c("run", q_ir, "--jit", *flags, "--target=" + isa, "-i", xpath,
                            *out_args(got), check=False)
                if r.returncode != 0 and "lacks" in r.stderr:
                    self.unavailable[isa] = r.stderr.strip().splitlines()[-1]
                    if isa in RUNS_HERE:
                        self.t.check("%s %s %s runs" % (label, isa, how), False,
                                     "q8c --list-targets says runs-here, but:\n" + r.stderr)
                    else:
                        self.t.skip("%s %s %s" % (label, isa, how), "CPU lacks it")
                    continue
                if r.returncode != 0:
                    self.t.check("%s %s %s runs" % (label, isa, how), False, r.stderr)
                    continue
                if isa not in RUNS_HERE:
                    self.t.check("%s %s %s is refused" % (label, isa, how), False,
                                 "q8c --list-targets says this CPU cannot run it, yet it ran")
                    continue
                for o in outputs:
                    want, have = np.load(ref[o]), np.load(got[o])
                    same = have.dtype == want.dtype and have.shape == want.shape and \
                        have.tobytes() == want.tobytes()
                    detail = "" if same else "max |diff| %g" % float(
                        np.max(np.abs(have.astype(np.float64) - want)))
                    self.t.check("%s %s %s %%%s bit-exact" % (label, isa, how, o), same, detail)


def test_linear_sweep(t, run, rng):
    """Single layers over M (1..17), K and N (primes, non-multiples of 4/16/64)."""
    shapes = [(1, 1, 1), (1, 3, 7), (2, 4, 16), (3, 5, 17), (4, 17, 33), (5, 31, 15),
              (6, 64, 64), (7, 65, 100), (8, 127, 16), (9, 200, 7), (10, 3, 64), (11, 64, 1),
              (12, 100, 33), (13, 257, 48), (14, 16, 129), (15, 300, 17), (16, 64, 256),
              (17, 129, 65), (1, 4096, 1024), (64, 784, 256), (33, 1000, 200)]
    for m, k, n in shapes:
        d = tmpdir()
        w, b = linear_params(rng, n, k)
        model = write_model(d, "lin", """model lin {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w, @b
  output %%y
}
""" % k, {"w": w, "b": b})
        calib = os.path.join(d, "calib.npy")
        np.save(calib, rng.standard_normal((32, k)).astype(np.float32))
        x = rng.standard_normal((m, k)).astype(np.float32)
        run.check("linear %dx%dx%d" % (m, k, n), model, calib, x, m)


def test_schemes(t, run, rng):
    """A 3-layer MLP (u8 chains with fused relu) under every scheme."""
    for label, extra in [("mlp u8-asym", []),
                         ("mlp s8-sym", ["--activations=s8-sym"]),
                         ("mlp per-tensor", ["--weights=s8-per-tensor"]),
                         ("mlp dynamic", ["--dynamic"]),
                         ("mlp keep-float", ["--keep-float=%h2"])]:
        model, calib = mlp_model(rng)
        x = rng.standard_normal((5, 48)).astype(np.float32)
        run.check(label, model, None if "--dynamic" in extra else calib, x, 5, extra,
                  x_form="--dynamic" not in extra)


def test_float_ops(t, run, rng):
    """int8 layers around every float op, which run through the reference ops."""
    model, calib = float_ops_model(rng)
    run.check("float ops", model, calib, rng.standard_normal((3, 4, 16)).astype(np.float32), 3,
              outputs=("y", "p"), x_form=False)


def test_transformer_ops(t, run, rng):
    """The transformer ops, numpy broadcasting, matmul with broadcast batch
    dims and literal scalars, between int8 layers (calibrated and dynamic):
    their reference calls in compiled code give the interpreter's bits."""
    for label, extra in [("transformer ops", []), ("transformer ops dynamic", ["--dynamic"])]:
        model, calib = transformer_ops_model(rng)
        run.check(label, model, None if extra else calib,
                  rng.standard_normal((3, 4, 16)).astype(np.float32), 3, extra,
                  outputs=("y", "p"), x_form=False)


def test_quantized_io(t, run, rng):
    """A hand-quantized layer with u8 input and output, used in place when its
    rows are a multiple of 4 bytes and copied through padded rows when not."""
    for k in (6, 8):
        n = 12
        text = """model qio {
  weights "WEIGHTS"
  input %%x : u8[?, %d]
  %%y : u8[?, %d] = qgemm %%x, @w, @bias, @mult {scale = 0.05, zero_point = 3, dtype = u8, relu = 1}
  output %%y
}
""" % (k, n)
        tensors = {"w": rng.integers(-127, 128, (n, k)).astype(np.int8),
                   "bias": rng.integers(-5000, 5000, n).astype(np.int32),
                   "mult": rng.uniform(0.001, 0.02, n).astype(np.float32)}
        d = tmpdir()
        model = write_model(d, "qio", text, tensors)
        x = rng.integers(0, 256, (7, k)).astype(np.uint8)
        run.check("u8 in/out k=%d" % k, model, None, x, 7, x_form=False)
    # An f32 output with a quantized form that a later layer quantizes again:
    # at the quantized entry the later layer must still read the f32 value.
    text = """model chain {
  weights "WEIGHTS"
  input %x : f32[?, 12] {scale = 0.02, zero_point = 128, dtype = u8}
  %y : f32[?, 8] = qgemm %x, @w1, @bias1, @mult1 {x_scale = 0.02, x_zero_point = 128, x_dtype = u8, dtype = f32}
  %z : f32[?, 4] = qgemm %y, @w2, @bias2, @mult2 {x_scale = 0.05, x_zero_point = 120, x_dtype = u8, dtype = f32}
  output %y {scale = 0.05, zero_point = 120, dtype = u8}, %z {scale = 0.1, zero_point = 128, dtype = u8}
}
"""
    tensors = {"w1": rng.integers(-127, 128, (8, 12)).astype(np.int8),
               "bias1": rng.integers(-3000, 3000, 8).astype(np.int32),
               "mult1": rng.uniform(0.0005, 0.002, 8).astype(np.float32),
               "w2": rng.integers(-127, 128, (4, 8)).astype(np.int8),
               "bias2": rng.integers(-3000, 3000, 4).astype(np.int32),
               "mult2": rng.uniform(0.0005, 0.002, 4).astype(np.float32)}
    d = tmpdir()
    model = write_model(d, "chain", text, tensors)
    x = rng.uniform(-2.5, 2.5, (3, 12)).astype(np.float32)
    run.check("f32 output used again", model, None, x, 3, outputs=("y", "z"))


# What each variant's assembly must hold: its name -> needles that must share
# a line with the first one; [] means none of vpdpbusd and ymm (no AVX). Every
# x86_64 row of --list-targets needs an entry (test_asm fails otherwise).
ASM_EXPECTED = {"avx512vnni": ["vpdpbusd", "zmm"], "avxvnni": ["vpdpbusd", "{vex}", "ymm"],
                "avx2": ["vpmaddwd", "ymm"], "generic": []}


def test_asm(t, rng):
    """Every variant compiles; its assembly holds the intended instructions."""
    model, calib = mlp_model(rng)
    d = os.path.dirname(model)
    check_expectations(t, "asm", ISAS, ASM_EXPECTED)
    for isa in ISAS:
        if isa not in ASM_EXPECTED:
            continue
        needles = ASM_EXPECTED[isa]
        asm = os.path.join(d, isa + ".s")
        r = q8c(model, "--calib", calib, "--target=" + isa, "--emit=asm", "-o", asm,
                check=False)
        if not t.check("asm %s compiles" % isa, r.returncode == 0, r.stderr):
            continue
        text = open(asm).read()
        lines = [l for l in text.splitlines() if needles and needles[0] in l]
        ok = all(any(n in l for l in lines) for n in needles) if needles else \
            "vpdpbusd" not in text and "ymm" not in text
        t.check("asm %s has %s" % (isa, " + ".join(needles) or "no AVX"), ok)


HEADER_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

/* Uses the model library alone: no runtime, no q8c. */
int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "rb");
  float x[2 * 48], y[2 * 10];
  if (!f || fread(x, sizeof x, 1, f) != 1)
    return 2;
  fclose(f);
  void *scratch = aligned_alloc(64, ((size_t)mlp_SCRATCH_BYTES + 63) / 64 * 64);
  const void *in[1] = {x};
  void *out[1] = {y};
  if (mlp_run_generic(NULL, in, out, scratch, 2) != 0)
    return 3;
  fwrite(y, sizeof y, 1, stdout);
  /* The quantized entry, on x quantized with the descriptor's parameters. */
  const q8_tensor_desc *xd = &q8_model.inputs[0], *yd = &q8_model.outputs[0];
  if (xd->qdtype != Q8_DTYPE_U8 || yd->qdtype != Q8_DTYPE_U8 || !(xd->scale > 0))
    return 4;
  unsigned char xq[2 * 48], yq[2 * 10];
  for (int i = 0; i < 2 * 48; i++) {
    float q = __builtin_rintf(x[i] / xd->scale) + (float)xd->zero_point;
    xq[i] = (unsigned char)(q < 0 ? 0 : q > 255 ? 255 : q);
  }
  const void *qin[1] = {xq};
  void *qout[1] = {yq};
  if (mlp_run_quantized_generic(NULL, qin, qout, scratch, 2) != 0)
    return 5;
  fwrite(yq, sizeof yq, 1, stdout);
  free(scratch);
  return 0;
}
"""


def test_header(t, rng):
    """A C program using only the .so and the header --emit=header writes."""
    model, calib = mlp_model(rng)
    d = os.path.dirname(model)
    q8c(model, "--calib", calib, "-o", os.path.join(d, "q.ir"))
    q8c(os.path.join(d, "q.ir"), "--batch", 2, "--target=generic", "-o", os.path.join(d, "model.h"))
    q8c(os.path.join(d, "q.ir"), "--batch", 2, "--target=generic", "-o", os.path.join(d, "libmlp.so"))
    with open(os.path.join(d, "main.c"), "w") as f:
        f.write(HEADER_MAIN)
    include = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "include")
    # In a sanitizer build the library's reference ops are instrumented, so
    # the program links the sanitizer runtime too (tests/CMakeLists.txt).
    sanitize = os.environ.get("Q8_TEST_LDFLAGS", "").split()
    r = subprocess.run(["cc", "-std=c11", *sanitize, "-o", os.path.join(d, "app"),
                        os.path.join(d, "main.c"), "-I", d, "-I", include, "-L", d, "-lmlp",
                        "-Wl,-rpath," + d],
                       capture_output=True, text=True)
    if not t.check("a C program builds against model.h and the .so", r.returncode == 0, r.stderr):
        return
    x = rng.standard_normal((2, 48)).astype(np.float32)
    xp = os.path.join(d, "x.bin")
    x.tofile(xp)
    r = subprocess.run([os.path.join(d, "app"), xp], capture_output=True)
    np.save(os.path.join(d, "x.npy"), x)
    q8c("run", os.path.join(d, "q.ir"), "-i", os.path.join(d, "x.npy"), "-o",
        os.path.join(d, "ref.npy"))
    want = np.load(os.path.join(d, "ref.npy"))
    t.check("its output equals the interpreter's, bit for bit",
            r.returncode == 0 and r.stdout[:want.nbytes] == want.tobytes(),
            "exit %d" % r.returncode)
    with open(os.path.join(d, "q.ir")) as f:
        forms = qforms(f.read())
    np.save(os.path.join(d, "xq.npy"), quantize(x, forms[("input", "x")]))
    q8c("run", os.path.join(d, "q.ir"), "--quantized", "-i", os.path.join(d, "xq.npy"), "-o",
        os.path.join(d, "qref.npy"))
    qwant = np.load(os.path.join(d, "qref.npy"))
    t.check("its quantized entry (parameters from the descriptor) equals the interpreter's",
            r.returncode == 0 and r.stdout[want.nbytes:] == qwant.tobytes(),
            "exit %d" % r.returncode)


def test_outputs(t, rng):
    """What each --emit writes, and the errors around them."""
    model, calib = mlp_model(rng)
    d = os.path.dirname(model)
    for kind, check in [("llvm", "@q8_model"), ("header", "mlp_run_quantized_")]:
        out = os.path.join(d, "out." + kind)
        r = q8c(model, "--calib", calib, "--emit=" + kind, "-o", out, check=False)
        t.check("--emit=%s writes %s" % (kind, check),
                r.returncode == 0 and check in open(out).read(), r.stderr)
    obj = os.path.join(d, "m.o")
    r = q8c(model, "--calib", calib, "-o", obj, check=False)
    t.check("-o m.o writes an ELF object",
            r.returncode == 0 and open(obj, "rb").read(4) == b"\x7fELF", r.stderr)
    r = q8c(model, "--calib", calib, "--emit=so", check=False)
    t.check("--emit=so without -o is refused",
            r.returncode == 2 and "give -o FILE" in r.stderr, r.stderr)
    r = q8c(model, "--calib", calib, "--target=avx9", "-o", os.path.join(d, "x.so"),
            check=False)
    t.check("an unknown target is named",
            r.returncode == 2 and "unknown target 'avx9'" in r.stderr, r.stderr)
    r = q8c(model, "--calib", calib, "-o", os.path.join(d, "x.so"),
            env={"CC": "/nonexistent/cc"}, check=False)
    t.check("a missing C compiler is reported",
            r.returncode == 1 and "cannot run the C compiler '/nonexistent/cc'" in r.stderr,
            r.stderr)
    so = os.path.join(d, "m.so")
    q8c(model, "--calib", calib, "--target=generic", "--batch", 1, "-o", so)
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((2, 48)).astype(np.float32))
    r = q8c("run", so, "-i", x, check=False)
    t.check("a .so compiled for batch 1 refuses batch 2",
            r.returncode == 1 and "compiled for f32[1, 48]" in r.stderr, r.stderr)
    r = q8c("run", so, "-i", x, env={"Q8_ISA": "avx512vnni"}, check=False)
    t.check("Q8_ISA naming an absent variant is refused",
            r.returncode == 1 and "no variant 'avx512vnni'" in r.stderr, r.stderr)
    x1 = os.path.join(d, "x1.npy")
    np.save(x1, rng.standard_normal((1, 48)).astype(np.float32))
    r = q8c("run", so, "--quantized", "-i", x1, check=False)
    t.check("the quantized entry of a .so refuses an f32 input",
            r.returncode == 1 and "input 'x' is f32[1, 48] but the model's quantized entry "
            "takes u8[1, 48]" in r.stderr and "--batch" not in r.stderr, r.stderr)
    r = q8c(model, "--quantized", "--calib", calib, check=False)
    t.check("--quantized outside q8c run is a usage error",
            r.returncode == 2 and "--quantized is for `q8c run`" in r.stderr, r.stderr)


def test_list_targets(t, rng):
    """q8c --list-targets: the table's rows, best first, and which run here;
    the runtime agrees with it, variant by variant, and Q8_CPU_FEATURES
    restricts it as it restricts the runtime."""
    rows = list_targets(Q8C)
    names = [v.name for v in rows]
    t.check("--list-targets names each variant once", len(set(names)) == len(names), str(names))
    t.check("--list-targets has x86_64 and aarch64 rows",
            {v.arch for v in rows} == {"x86_64", "aarch64"}, str(rows))
    t.check("this x86_64 machine runs no aarch64 variant",
            not any(v.runs_here for v in rows if v.arch != "x86_64"), str(rows))
    # Best first: the last x86_64 row is the baseline, which every x86_64 CPU runs.
    t.check("this CPU runs the last x86_64 variant, the baseline (%s)" % ISAS[-1],
            TARGETS[-1].runs_here, str(TARGETS))
    bare = list_targets(Q8C, env={"Q8_CPU_FEATURES": "none"})
    t.check("with Q8_CPU_FEATURES=none only the x86_64 baseline runs here",
            [v.name for v in bare if v.runs_here] == [ISAS[-1]], str(bare))

    model, calib = mlp_model(rng)
    d = os.path.dirname(model)
    so = os.path.join(d, "all.so")
    q8c(model, "--calib", calib, "--batch", 2, "--target=" + ",".join(ISAS), "-o", so)
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((2, 48)).astype(np.float32))
    for isa in ISAS:
        r = q8c("run", so, "-i", x, "-o", os.path.join(d, isa + ".npy"), env={"Q8_ISA": isa},
                check=False)
        if isa in RUNS_HERE:
            t.check("%s: listed as runs-here, and the runtime runs it" % isa, r.returncode == 0,
                    r.stderr)
        else:
            t.check("%s: listed as not running here, and the runtime refuses it" % isa,
                    r.returncode == 1 and "lacks" in r.stderr, r.stderr)


def main():
    t = Tally()
    rng = np.random.default_rng(2024)
    run = Runner(t)
    skipped = [v for v in ISAS if v not in RUNS_HERE]
    if skipped:
        print("note: this CPU does not run %s (q8c --list-targets): their runs are skipped, "
              "their assembly is still checked" % ", ".join(skipped), flush=True)
    test_linear_sweep(t, run, rng)
    test_schemes(t, run, rng)
    test_float_ops(t, run, rng)
    test_transformer_ops(t, run, rng)
    test_quantized_io(t, run, rng)
    test_asm(t, rng)
    test_header(t, rng)
    test_outputs(t, rng)
    test_list_targets(t, np.random.default_rng(2026))
    for isa, why in sorted(run.unavailable.items()):
        print("skipped %s: %s" % (isa, why))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
