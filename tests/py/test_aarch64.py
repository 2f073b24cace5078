"""End-to-end tests of the AArch64 backend (codegen/aarch64/qgemm.c): models
cross-compiled for aarch64-i8mm, aarch64-dotprod and aarch64 and run under
qemu-user must give output bytes identical to the integer reference
interpreter (`q8c run q.ir`, on this x86 machine), and so to the x86 code.

What it needs: the cross toolchain (gcc-aarch64-linux-gnu, which the build
uses to make build/aarch64/libq8support.a, libq8rt.so and run_model) to link
and qemu-user (qemu-aarch64, with the aarch64 libc of libc6-dev-arm64-cross
in /usr/aarch64-linux-gnu) to run. Each case that cannot run here is counted
as skipped, with the reason; the assembly checks need neither.

The variants are the aarch64 rows of `q8c --list-targets` (codegen/isa.def),
not a list written here; the assembly expectations are keyed by name and
must cover every row. (The kernels alone, over the m/k/n sweep of
tests/unit/test_kernels.c, are tests/tools/a64_sweep_gen.c's and
a64_sweep_run.c's.)

Usage: test_aarch64.py /path/to/q8c
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import (float_ops_model, linear_params, mlp_model, qforms,  # noqa: E402
                      quantize, write_model)
from q8test import Tally, check_expectations, list_targets, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
ISAS = [v.name for v in list_targets(Q8C) if v.arch == "aarch64"]  # best first
A64 = os.path.join(os.path.dirname(Q8C), "aarch64")
SYSROOT = "/usr/aarch64-linux-gnu"
EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "mlp")


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                       env=e, timeout=300)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)),
                                                       r.returncode, r.stderr))
    return r


def why_cannot_link():
    """None when q8c can link an aarch64 .so here, else the reason."""
    cc = os.environ.get("Q8_CC_AARCH64") or "aarch64-linux-gnu-gcc"
    if not shutil.which(cc):
        return "no aarch64 cross compiler (%s; apt-get install gcc-aarch64-linux-gnu)" % cc
    if not os.path.exists(os.path.join(A64, "libq8support.a")):
        return "no %s/libq8support.a (configure the build with the cross compiler installed)" % A64
    return None


def why_cannot_run():
    """None when aarch64 programs run here under qemu-user, else the reason."""
    if why_cannot_link():
        return why_cannot_link()
    if not shutil.which("qemu-aarch64"):
        return "no qemu-aarch64 (apt-get install qemu-user)"
    if not os.path.isdir(os.path.join(SYSROOT, "lib")):
        return "no aarch64 libc in %s (apt-get install libc6-dev-arm64-cross)" % SYSROOT
    if not os.path.exists(os.path.join(A64, "run_model")):
        return "no %s/run_model (build the tests with the cross compiler installed)" % A64
    return None


def run_a64(so, inputs, outputs, cpu="max", env=None, quantized=False):
    """Run `so` under qemu-aarch64 -cpu CPU through run_model."""
    e = dict(os.environ)
    e.update(env or {})
    cmd = ["qemu-aarch64", "-cpu", cpu, "-L", SYSROOT, os.path.join(A64, "run_model"), so]
    cmd += ["--quantized"] if quantized else []
    cmd += [a for i in inputs for a in ("-i", i)] + [a for o in outputs for a in ("-o", o)]
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)


def same_bytes(want_path, have_path):
    want, have = np.load(want_path), np.load(have_path)
    if have.dtype == want.dtype and have.shape == want.shape and have.tobytes() == want.tobytes():
        return True, ""
    if have.shape != want.shape or have.dtype != want.dtype:
        return False, "%s%s vs %s%s" % (have.dtype, have.shape, want.dtype, want.shape)
    return False, "max |diff| %g" % float(np.max(np.abs(have.astype(np.float64) - want)))


class Runner:
    """Compiles a quantized model for every AArch64 variant, runs each under
    qemu and compares with the interpreter."""

    def __init__(self, tally):
        self.t = tally
        self.link_reason = why_cannot_link()
        self.run_reason = why_cannot_run()

    def check_qir(self, label, q_ir, inputs, outputs, batch, x86=False, quantized=False):
        """Compare every variant's outputs (and with x86, the native x86
        .so's) with the interpreter's, byte for byte. Returns the aarch64
        output files of the first variant that ran, by output name."""
        d = os.path.dirname(q_ir)
        tag = re.sub(r"\W+", "_", label)
        ref = {o: os.path.join(d, "%s-%s-ref.npy" % (tag, o)) for o in outputs}
        flags = ["--quantized"] if quantized else []
        q8c("run", q_ir, *flags, *[a for i in inputs for a in ("-i", i)],
            *[a for o, f in ref.items() for a in ("-o", "%s=%s" % (o, f))])
        if self.link_reason:
            self.t.skip("%s: aarch64 .so" % label, self.link_reason)
            return None
        so = os.path.join(d, tag + ".so")
        r = q8c(q_ir, "--batch", batch, "--target=" + ",".join(ISAS), "-o", so, check=False)
        if not self.t.check("%s: links for %s" % (label, ", ".join(ISAS)), r.returncode == 0,
                            r.stderr):
            return None
        if self.run_reason:
            self.t.skip("%s: run" % label, self.run_reason)
            return None
        first = None
        for isa in ISAS:
            got = {o: os.path.join(d, "%s-%s-%s.npy" % (tag, o, isa)) for o in outputs}
            r = run_a64(so, inputs, list(got.values()), env={"Q8_ISA": isa}, quantized=quantized)
            if not self.t.check("%s %s runs" % (label, isa),
                                r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                                r.stdout + r.stderr):
                continue
            for o in outputs:
                ok, detail = same_bytes(ref[o], got[o])
                self.t.check("%s %s %%%s bit-exact" % (label, isa, o), ok, detail)
            first = first or got
        if x86 and first:
            # The same q.ir compiled for this machine: x86 bytes equal aarch64 bytes.
            so86 = os.path.join(d, tag + "-x86.so")
            q8c(q_ir, "--batch", batch, "-o", so86)
            got86 = {o: os.path.join(d, "%s-%s-x86.npy" % (tag, o)) for o in outputs}
            q8c("run", so86, *flags, *[a for i in inputs for a in ("-i", i)],
                *[a for o, f in got86.items() for a in ("-o", "%s=%s" % (o, f))])
            for o in outputs:
                ok, detail = same_bytes(got86[o], first[o])
                self.t.check("%s %%%s: x86 and aarch64 give the same bytes" % (label, o), ok,
                             detail)
        return first

    def check(self, label, model, calib, x, batch, extra=(), outputs=("y",), x86=False):
        d = os.path.dirname(model)
        q_ir = os.path.join(d, "q.ir")
        q8c(model, *(["--calib", calib] if calib else []), *extra, "-o", q_ir)
        xpath = os.path.join(d, "x.npy")
        np.save(xpath, x)
        return self.check_qir(label, q_ir, [xpath], outputs, batch, x86=x86)


def linear_model(rng, k, n):
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
    return model, calib


def test_linear_sweep(t, run, rng):
    """Single layers over M (1..17), K and N (primes, non-multiples of 4, 8
    and 16, the tails of every form), u8-asym and s8-sym activations."""
    shapes = [(1, 1, 1), (1, 3, 7), (2, 4, 16), (3, 5, 17), (4, 17, 33), (5, 31, 15),
              (6, 64, 64), (7, 65, 100), (8, 127, 16), (9, 200, 7), (10, 3, 64), (11, 64, 1),
              (12, 100, 33), (13, 257, 48), (14, 16, 129), (15, 300, 17), (16, 64, 256),
              (17, 129, 65), (1, 4096, 1024), (64, 784, 256), (33, 1000, 200)]
    for m, k, n in shapes:
        model, calib = linear_model(rng, k, n)
        x = rng.standard_normal((m, k)).astype(np.float32)
        run.check("u8 linear %dx%dx%d" % (m, k, n), model, calib, x, m)
    for m, k, n in [(1, 13, 9), (2, 24, 12), (3, 40, 5), (5, 8, 20), (9, 100, 33),
                    (17, 129, 65), (1, 1000, 300)]:
        model, calib = linear_model(rng, k, n)
        x = rng.standard_normal((m, k)).astype(np.float32)
        run.check("s8 linear %dx%dx%d" % (m, k, n), model, calib, x, m,
                  ["--activations=s8-sym"])


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
                  x86=label == "mlp u8-asym")
        if "--dynamic" in extra:
            continue
        # The quantized entry: u8 / i8 in and out, on the input quantized as
        # its first layer would (the interpreter's --quantized is the oracle).
        d = os.path.dirname(model)
        q_ir = os.path.join(d, "q.ir")
        with open(q_ir) as f:
            form = qforms(f.read()).get(("input", "x"))
        if not t.check("%s: input %%x has a quantized form" % label, form is not None):
            continue
        xq = quantize(x, form)
        xqpath = os.path.join(d, "xq.npy")
        np.save(xqpath, xq)
        run.check_qir(label + " quantized entry", q_ir, [xqpath], ("y",), 5,
                      x86=label == "mlp u8-asym", quantized=True)


def test_float_ops(t, run, rng):
    """int8 layers around every float op, which run through the aarch64
    libq8support.a: the reference ops built by another compiler for another
    libm must still give the interpreter's bytes."""
    model, calib = float_ops_model(rng)
    run.check("float ops", model, calib, rng.standard_normal((3, 4, 16)).astype(np.float32), 3,
              outputs=("y", "p"))


def test_quantized_io(t, run, rng):
    """Hand-written qgemm layers with quantized inputs and outputs (u8 in,
    u8 with relu, i8 out; i8 in, f32 out): the quantized bytes themselves,
    on x86 and AArch64. The first layer's weights include -128, which the
    quantizer never writes: the plain NEON kernel's i16 pair of products
    could overflow there, so it must take its unpaired path."""
    d = tmpdir()
    k, n1, n2 = 37, 21, 9
    w1 = rng.integers(-128, 128, (n1, k)).astype(np.int8)
    w1[:, :4] = -128
    tensors = {"w1": w1, "b1": rng.integers(-5000, 5000, n1).astype(np.int32),
               "m1": rng.uniform(1e-4, 1e-3, n1).astype(np.float32),
               "w2": rng.integers(-127, 128, (n2, n1)).astype(np.int8),
               "b2": rng.integers(-500, 500, n2).astype(np.int32),
               "m2": rng.uniform(1e-3, 1e-2, n2).astype(np.float32)}
    text = """model qio {
  weights "WEIGHTS"
  input %%x : u8[?, %d]
  %%h : u8[?, %d] = qgemm %%x, @w1, @b1, @m1 {scale = 0.1, zero_point = 7, dtype = u8, relu = 1}
  %%y : i8[?, %d] = qgemm %%h, @w2, @b2, @m2 {scale = 0.05, zero_point = 0, dtype = i8}
  output %%y, %%h
}
""" % (k, n1, n2)
    q_ir = write_model(d, "qio", text, tensors)
    x = rng.integers(0, 256, (3, k)).astype(np.uint8)
    x[:, :4] = 0  # x - 128 = -128 against w = -128: a pair sums to 32768
    xpath = os.path.join(d, "xq.npy")
    np.save(xpath, x)
    run.check_qir("quantized u8 in/out", q_ir, [xpath], ("y", "h"), 3, x86=True)

    text = """model qi8 {
  weights "WEIGHTS"
  input %%x : i8[?, %d]
  %%y : f32[?, %d] = qgemm %%x, @w1, @b1, @m1 {dtype = f32, relu = 1}
  output %%y
}
""" % (k, n1)
    q_ir = write_model(d, "qi8", text, tensors)
    xpath = os.path.join(d, "xs.npy")
    xs = rng.integers(-128, 128, (4, k)).astype(np.int8)
    xs[:, :4] = -128
    np.save(xpath, xs)
    run.check_qir("quantized i8 in", q_ir, [xpath], ("y",), 4, x86=True)


def test_example(t, run):
    """The bundled example (examples/mlp) end to end: quantize, compile for
    every AArch64 variant, run; the same bytes as the interpreter and x86."""
    d = tmpdir()
    for f in ("mlp.ir", "mlp.safetensors", "calib.npy", "input.npy"):
        shutil.copy(os.path.join(EXAMPLE, f), d)
    x = np.load(os.path.join(d, "input.npy"))
    run.check("examples/mlp", os.path.join(d, "mlp.ir"), os.path.join(d, "calib.npy"), x,
              x.shape[0], x86=True)


def test_runtime(t, run, rng):
    """The runtime on aarch64: it picks the best variant the CPU has
    (getauxval), refuses a variant the CPU lacks with a message naming the
    feature, honours Q8_CPU_FEATURES, and splits big layers over threads."""
    if run.run_reason:
        t.skip("aarch64 runtime checks", run.run_reason)
        return
    d = tmpdir()
    model, calib = linear_model(rng, 784, 256)
    q_ir = os.path.join(d, "q.ir")
    q8c(model, "--calib", calib, "-o", q_ir)
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((64, 784)).astype(np.float32))
    ref = os.path.join(d, "ref.npy")
    q8c("run", q_ir, "-i", x, "-o", ref)
    sos = {}
    for name, targets in [("all", ISAS), ("i8mm", ["aarch64-i8mm"]),
                          ("dotprod", ["aarch64-dotprod"])]:
        sos[name] = os.path.join(d, name + ".so")
        q8c(q_ir, "--batch", 64, "--target=" + ",".join(targets), "-o", sos[name])
    y = os.path.join(d, "y.npy")
    for label, so, cpu, env, want in [
            ("-cpu max picks i8mm", "all", "max", {}, "aarch64-i8mm"),
            ("-cpu neoverse-n1 (no i8mm) picks dotprod", "all", "neoverse-n1", {},
             "aarch64-dotprod"),
            ("-cpu cortex-a53 (no dotprod) picks plain NEON", "all", "cortex-a53", {}, "aarch64"),
            ("Q8_CPU_FEATURES=neon,dotprod picks dotprod", "all", "max",
             {"Q8_CPU_FEATURES": "neon,dotprod"}, "aarch64-dotprod"),
            ("Q8_CPU_FEATURES=neon picks plain NEON", "all", "max", {"Q8_CPU_FEATURES": "neon"},
             "aarch64"),
            ("Q8_THREADS=2 (the layer split into tasks)", "all", "max", {"Q8_THREADS": "2"},
             "aarch64-i8mm")]:
        if os.path.exists(y):
            os.unlink(y)
        r = run_a64(sos[so], [x], [y], cpu=cpu, env=env)
        ok = r.returncode == 0 and ("variant: %s\n" % want) in r.stdout
        if t.check(label, ok, r.stdout + r.stderr):
            t.check(label + ": bit-exact", *same_bytes(ref, y))
    for label, so, cpu, env, needs in [
            ("an i8mm-only model refused on neoverse-n1", "i8mm", "neoverse-n1", {}, "i8mm"),
            ("a dotprod-only model refused on cortex-a53", "dotprod", "cortex-a53", {},
             "dotprod"),
            ("a dotprod-only model refused with Q8_CPU_FEATURES=neon", "dotprod", "max",
             {"Q8_CPU_FEATURES": "neon"}, "dotprod")]:
        r = run_a64(sos[so], [x], [y], cpu=cpu, env=env)
        t.check(label, r.returncode == 1 and ("needs %s, which this CPU lacks" % needs) in r.stderr,
                r.stdout + r.stderr)


def asm_of(model, calib, target, batch, extra=()):
    d = os.path.dirname(model)
    out = os.path.join(d, "%s-%d-%s.s" % (target, batch, "-".join(extra) or "u8"))
    r = q8c(model, "--calib", calib, "--target=" + target, "--batch", batch, *extra,
            "--emit=asm", "-o", out, check=False)
    return (open(out).read() if r.returncode == 0 else None), r.stderr


# What each variant's assembly must hold, by name: (batch, flags, mnemonics it
# must have, mnemonics it must not). Every aarch64 row of --list-targets needs
# an entry (test_asm fails otherwise).
ASM_EXPECTED = {
    "aarch64-i8mm": [(5, (), ["usmmla"], ["sdot", "smull"]),
                     (5, ("--activations=s8-sym",), ["smmla"], ["usmmla"]),
                     (1, (), ["sudot"], ["usmmla"])],
    "aarch64-dotprod": [(5, (), ["sdot"], ["usmmla", "smmla", "sudot", "usdot"]),
                        (1, ("--activations=s8-sym",), ["sdot"], ["eor"])],
    "aarch64": [(5, (), ["smull", "smlal2", "sadalp"], ["sdot", "udot", "smmla"])],
}


def test_asm(t, rng):
    """Each variant's assembly holds its instructions (LLVM's AArch64 target
    is part of q8c: no cross toolchain needed), and no fused multiply-add."""
    model, calib = mlp_model(rng)

    def has(text, mnemonic):
        return re.search(r"^\s*%s\s" % mnemonic, text, re.M) is not None

    check_expectations(t, "asm", ISAS, ASM_EXPECTED)
    cases = [(isa,) + c for isa in ISAS for c in ASM_EXPECTED.get(isa, [])]
    for target, batch, extra, want, avoid in cases:
        label = "asm %s batch %d%s" % (target, batch, " " + " ".join(extra) if extra else "")
        text, err = asm_of(model, calib, target, batch, extra)
        if not t.check(label + " compiles", text is not None, err):
            continue
        # The requantization epilogue: frintn (round to nearest even), no fused fmla/fmadd.
        t.check("%s has %s" % (label, ", ".join(want + ["frintn"])),
                all(has(text, w) for w in want + ["frintn"]),
                "missing: %s" % [w for w in want + ["frintn"] if not has(text, w)])
        bad = [a for a in avoid + ["fmla", "fmadd"] if has(text, a)]
        t.check("%s has no %s" % (label, ", ".join(avoid + ["fmla", "fmadd"])), not bad,
                "found: %s" % bad)
    # The lane forms: sdot v.4s, w.16b, x.4b[i] (x broadcast 4 bytes at a time).
    text, err = asm_of(model, calib, "aarch64-dotprod", 5)
    t.check("asm aarch64-dotprod uses sdot by element",
            text is not None and re.search(r"sdot\s+v\d+\.4s, v\d+\.16b, v\d+\.4b\[\d\]", text),
            err)
    # native on this machine stays x86.
    text, err = asm_of(model, calib, "native", 5)
    t.check("asm native is x86 code", text is not None and "%rsp" in text and
            not has(text, "sdot"), err)


def test_errors(t, rng):
    """What q8c says when an AArch64 target cannot be done."""
    model, calib = mlp_model(rng)
    d = os.path.dirname(model)
    r = q8c(model, "--calib", calib, "--target=avx2,aarch64-dotprod", "-o",
            os.path.join(d, "mix.so"), check=False)
    t.check("mixing x86 and aarch64 variants is refused",
            r.returncode == 2 and "one model library holds one architecture" in r.stderr,
            r.stderr)
    q_ir = os.path.join(d, "q.ir")
    q8c(model, "--calib", calib, "-o", q_ir)
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((1, 48)).astype(np.float32))
    r = q8c("run", q_ir, "--jit", "--target=aarch64-dotprod", "-i", x, "-o",
            os.path.join(d, "y.npy"), check=False)
    t.check("the JIT refuses aarch64 code on x86",
            r.returncode == 1 and "cannot run aarch64 code on this x86_64 machine" in r.stderr,
            r.stderr)
    r = q8c(q_ir, "--target=aarch64", "-o", os.path.join(d, "x.so"),
            env={"Q8_CC_AARCH64": "/nonexistent/aarch64-gcc"}, check=False)
    if not os.path.exists(os.path.join(A64, "libq8support.a")):
        t.check("a missing aarch64 libq8support.a is reported",
                r.returncode == 1 and "cannot find the aarch64 libq8support.a" in r.stderr,
                r.stderr)
    else:
        t.check("a missing cross compiler is reported",
                r.returncode == 1 and "cannot run the C compiler '/nonexistent/aarch64-gcc'" in
                r.stderr and "gcc-aarch64-linux-gnu" in r.stderr, r.stderr)
    obj = os.path.join(d, "m.o")
    r = q8c(q_ir, "--target=aarch64-i8mm", "-o", obj, check=False)
    data = open(obj, "rb").read(20) if r.returncode == 0 else b""
    # e_machine (offset 18, little-endian) 183 is EM_AARCH64.
    t.check("-o m.o writes an AArch64 ELF object",
            data[:4] == b"\x7fELF" and data[18:20] == (183).to_bytes(2, "little"), r.stderr)


ATTENTION = """model attention {
  weights "WEIGHTS"
  input %x : f32[?, 8, 32]
  %qkv = linear %x, @wqkv, @bqkv
  %q, %k, %v = split %qkv {axis = -1}
  %qh = reshape %q {shape = [?, 8, 4, 8]}
  %qt = transpose %qh {perm = [0, 2, 1, 3]}
  %kh = reshape %k {shape = [?, 8, 4, 8]}
  %kt = transpose %kh {perm = [0, 2, 3, 1]}
  %vh = reshape %v {shape = [?, 8, 4, 8]}
  %vt = transpose %vh {perm = [0, 2, 1, 3]}
  %s = matmul %qt, %kt
  %ss = mul %s, 0.35355338
  %p = softmax %ss {axis = -1, causal = 1}
  %o = matmul %p, %vt
  %ot = transpose %o {perm = [0, 2, 1, 3]}
  %of = reshape %ot {shape = [?, 8, 32]}
  %y = linear %of, @wo, @bo
  output %y, %s
}
"""


def test_attention(t, run, rng):
    """int8 attention: the matmuls of two activations (Q K^T, P V) as
    qmatmul (static u8-asym and s8-sym) and qmatmul_dyn (dynamic), batched
    over heads, under qemu on every variant: the outputs (and Q K^T itself,
    a qmatmul's f32 result) bit-exact against the interpreter."""
    wqkv, bqkv = linear_params(rng, 96, 32)
    wo, bo = linear_params(rng, 32, 32)
    for label, extra, op in (("attention static", [], "qmatmul"),
                             ("attention s8-sym", ["--activations=s8-sym"], "qmatmul"),
                             ("attention dynamic", ["--dynamic"], "qmatmul_dyn")):
        d = tmpdir()
        model = write_model(d, "attention", ATTENTION,
                            {"wqkv": wqkv * 2, "bqkv": bqkv, "wo": wo, "bo": bo})
        calib = os.path.join(d, "calib.npy")
        np.save(calib, rng.standard_normal((32, 8, 32)).astype(np.float32))
        x = rng.standard_normal((3, 8, 32)).astype(np.float32)
        x[0, 0, :2] = [30.0, -30.0]          # beyond the calibrated range: saturation
        run.check(label, model, None if "--dynamic" in extra else calib, x, 3, extra,
                  outputs=("y", "s"), x86=True)
        with open(os.path.join(d, "q.ir")) as f:
            ops = re.findall(r"= (\w+) ", f.read())
        t.check("%s: two %s, no float matmul" % (label, op),
                ops.count(op) == 2 and "matmul" not in ops, " ".join(ops))


def main():
    t = Tally()
    rng = np.random.default_rng(2025)
    run = Runner(t)
    if run.run_reason:
        print("note: aarch64 runs are skipped: %s" % run.run_reason, flush=True)
    test_asm(t, rng)
    test_errors(t, rng)
    test_linear_sweep(t, run, rng)
    test_schemes(t, run, rng)
    test_float_ops(t, run, rng)
    test_attention(t, run, rng)
    test_quantized_io(t, run, rng)
    test_example(t, run)
    test_runtime(t, run, rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
