"""4-bit weights (--weights=nf4:G, fp4:G, --double-quant; linear_4bit).

1. Quantization against numpy ports of bitsandbytes: its NF4 and FP4 tables
   (get_4bit_type), the block maxima and the threshold loops of its CPU
   quantize_4bit, the codes packed two a byte (even k low, as its CPU
   backend), and the double quantization of the maxima (the mean removed,
   blocks of 256, the dynamic 8-bit map of create_dynamic_map, computed
   here with torch as bitsandbytes does).
2. The interpreter against a numpy evaluation of docs/quantization.md's
   arithmetic (w = table[c] * absmax in f32, products in f32, the 16-lane
   sum of docs/float.md), bit for bit.
3. Every variant against the interpreter, bit for bit: the x86 ones this
   machine runs (and the JIT), the AArch64 ones under qemu-user; the
   assembly of each variant (the table lookups of codegen/nf4.c) including
   AVX-512 and AVX-VNNI, which cannot run here.
4. Sizes (bits per weight), errors, and the fallback to int8 when K is not a
   multiple of the block.
5. --weights-for wins over --weights=nf4:G for the weights it names (the IR's
   ops), and the report's size line names the formats it measures ("nf4:64
   + int8") with the exact bytes of the quantized constants.

Usage: test_nf4.py /path/to/q8c
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import write_model  # noqa: E402
from q8test import Tally, check_expectations, list_targets, read_safetensors, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
TARGETS = list_targets(Q8C)
A64 = os.path.join(os.path.dirname(Q8C), "aarch64")
SYSROOT = "/usr/aarch64-linux-gnu"

F32 = np.float32
# bitsandbytes' get_4bit_type("nf4") and ("fp4") (its data, divided by its
# maximum in float32).
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], F32)
FP4 = np.array([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0,
                -6.0, -2.0, -3.0], F32) / F32(12.0)
# Its CPU backend's NF4_QUANT_TABLE and FP4_QUANT_TABLE (the thresholds of
# dQuantizeNF4 / dQuantizeFP4), as float32 like the CUDA literals.
NF4_QUANT_TABLE = [-1.0 - 1e-2, -0.8480964004993439, -0.6106329262256622, -0.4599952697753906,
                   -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
                   -0.045525018125772476, 0.03979014977812767, 0.1202552504837513,
                   0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                   0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
FP4_QUANT_TABLE = {0 - 1e-2: 0, 0.00260417: 1, 0.0859375: 6, 0.20833333: 7, 0.29166667: 4,
                   0.4166667: 5, 0.583333: 2, 0.8333333: 3}


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
    total_bits=8), in torch float32 as it computes it; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    data = []
    non_sign_bits, max_exponent_bits = 7, 7
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return torch.Tensor(data).numpy()


def bnb_quantize_4bit(w, block, typename):
    """Codes [N, K/2] (even k low) and absmax [N, K/block], as bitsandbytes'
    CPU quantize_4bit on each row (the blocks of a row; q8c's rows hold whole
    blocks). An all-zero block: bnb divides by 0; q8c (and this port) gives
    it the code of 0."""
    n, k = w.shape
    blocks = w.reshape(n, k // block, block)
    absmax = np.abs(blocks).max(axis=-1).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(absmax > 0, F32(1) / absmax, F32(0)).astype(F32)
    scaled = np.clip((blocks * inv[..., None]).astype(F32), F32(-1), F32(1)).reshape(n, k)
    out = np.zeros(scaled.shape, np.uint8)
    if typename == "nf4":
        for i, t in enumerate(NF4_QUANT_TABLE):
            out[scaled > F32(t)] = i
    else:
        sign = scaled < 0
        for key, val in FP4_QUANT_TABLE.items():
            out[np.abs(scaled) > F32(key)] = val
        out += sign.astype(np.uint8) * 8
    zero = 7 if typename == "nf4" else 0
    out.reshape(n, k // block, block)[absmax == 0] = zero
    packed = (out[:, 1::2] << 4) | out[:, ::2]
    return packed.astype(np.uint8), absmax


def double_quant(absmax, dmap):
    """(q u8, absmax2 f32 [blocks + 1]) as docs/quantization.md states it:
    mean over all maxima (double sum, rounded once), blocks of 256 of
    absmax - mean scaled by their own maximum, the nearest map entry (the
    lower on a tie), the mean last."""
    a = absmax.reshape(-1)
    mean = F32(np.sum(a.astype(np.float64)) / a.size)
    d = (a - mean).astype(F32)
    nb = (a.size + 255) // 256
    q = np.zeros(a.size, np.uint8)
    a2 = np.zeros(nb + 1, F32)
    for b in range(nb):
        blk = d[b * 256:(b + 1) * 256]
        s = np.abs(blk).max()
        a2[b] = s
        inv = F32(1) / s if s > 0 else F32(0)
        v = np.clip((blk * inv).astype(F32), F32(-1), F32(1))
        lo = np.clip(np.searchsorted(dmap, v, side="right") - 1, 0, 255)
        up = np.minimum(lo + 1, 255)
        take = (up != lo) & ((dmap[up] - v).astype(F32) < (v - dmap[lo]).astype(F32))
        q[b * 256:(b + 1) * 256] = np.where(take, up, lo)
    a2[nb] = mean
    return q.reshape(absmax.shape), a2


def dequantized_absmax(q, a2, dmap):
    nb = a2.size - 1
    g = np.arange(q.size)
    return ((dmap[q.reshape(-1)] * a2[g // 256]).astype(F32) + a2[nb]).astype(F32).reshape(q.shape)


def reference_linear(x, codes, absmax, table, block, b):
    """linear_4bit in numpy: w = table[c] * absmax (f32), p[k % 16] += x w
    in order of k (f32), halving 8 4 2 1, + b."""
    n = codes.shape[0]
    c = np.empty((n, codes.shape[1] * 2), np.uint8)
    c[:, ::2] = codes & 15
    c[:, 1::2] = codes >> 4
    w = (table[c] * np.repeat(absmax, block, axis=1)).astype(F32)
    k = w.shape[1]
    y = np.empty((x.shape[0], n), F32)
    for i in range(x.shape[0]):
        prod = (x[i][None, :] * w).astype(F32)  # [n, k]
        p = np.zeros((n, 16), F32)
        for j in range(0, k, 16):
            p = (p + prod[:, j:j + 16]).astype(F32)
        for h in (8, 4, 2, 1):
            p = (p[:, :h] + p[:, h:2 * h]).astype(F32)
        y[i] = p[:, 0] if b is None else (p[:, 0] + b).astype(F32)
    return y


def q8c(*args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True, env=e,
                       timeout=600)
    if check and r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)), r.returncode,
                                                       r.stderr))
    return r


def linear_model(d, k, n, w, b, name="lin"):
    bias = ", @b" if b is not None else ""
    tensors = {"w": w} if b is None else {"w": w, "b": b}
    return write_model(d, name, """model %s {
  weights "WEIGHTS"
  input %%x : f32[?, %d]
  %%y = linear %%x, @w%s
  output %%y
}
""" % (name, k, bias), tensors)


def quantized(d, model, opts):
    q_ir = os.path.join(d, "q.ir")
    q8c(model, *opts, "-o", q_ir)
    with open(q_ir) as f:
        text = f.read()
    consts = read_safetensors(os.path.join(d, "q.safetensors"))
    return q_ir, text, consts


def a64_reason():
    cc = os.environ.get("Q8_CC_AARCH64") or "aarch64-linux-gnu-gcc"
    if not shutil.which(cc):
        return "no aarch64 cross compiler"
    if not shutil.which("qemu-aarch64"):
        return "no qemu-aarch64"
    if not os.path.exists(os.path.join(A64, "run_model")):
        return "no %s/run_model" % A64
    return None


def same(t, label, want, have):
    ok = want.shape == have.shape and want.tobytes() == have.tobytes()
    detail = "" if ok else "max |diff| %g" % float(np.max(np.abs(want - have))) \
        if want.shape == have.shape else "%s vs %s" % (have.shape, want.shape)
    return t.check(label, ok, detail)


def test_quantization(t, rng, dmap):
    """Codes and maxima (and the double-quantized maxima) against the bnb
    ports, on weights with zeros, ties and an all-zero block."""
    for typename in ("nf4", "fp4"):
        for block in (32, 64, 128, 256):
            for dq in (False, True):
                if dq and dmap is None:
                    t.skip("%s:%d dq quantization" % (typename, block), "no torch")
                    continue
                n, k = 37, 512
                w = rng.standard_normal((n, k)).astype(F32)
                w[3, :block] = 0                               # an all-zero block
                w[5, :8] = np.array([1, -1, 0.5, -0.5, 0, 0, 2, -2], F32)
                d = tmpdir()
                model = linear_model(d, k, n, w, None)
                opts = ["--weights=%s:%d" % (typename, block)] + (["--double-quant"] if dq else [])
                _, text, consts = quantized(d, model, opts)
                base = "w.%s_%d%s" % (typename, block, "dq" if dq else "")
                codes, absmax = bnb_quantize_4bit(w, block, typename)
                label = "%s:%d%s" % (typename, block, " dq" if dq else "")
                same(t, label + " codes as bitsandbytes", codes, consts[base + ".codes"])
                if dq:
                    q, a2 = double_quant(absmax, dmap)
                    same(t, label + " double-quantized maxima", q, consts[base + ".absmax"])
                    same(t, label + " absmax2 (block scales, mean)", a2, consts[base + ".absmax2"])
                else:
                    same(t, label + " block maxima", absmax, consts[base + ".absmax"])
                attrs = "code = %s, block = %d%s" % (typename, block,
                                                       ", double_quant = 1" if dq else "")
                t.check(label + " node", ("linear_4bit %%x, @%s.codes" % base) in text and
                        attrs in text, text)


def test_interp(t, rng, dmap):
    """q8c run (the interpreter) against reference_linear, M 1..9."""
    for typename, table in (("nf4", NF4), ("fp4", FP4)):
        for block, dq, bias in ((64, False, True), (32, True, False), (256, False, False),
                                (128, True, True)):
            if dq and dmap is None:
                continue
            n, k, m = 29, 256, 5
            w = rng.standard_t(3, (n, k)).astype(F32)
            b = rng.standard_normal(n).astype(F32) if bias else None
            d = tmpdir()
            model = linear_model(d, k, n, w, b)
            opts = ["--weights=%s:%d" % (typename, block)] + (["--double-quant"] if dq else [])
            q_ir, _, consts = quantized(d, model, opts)
            base = "w.%s_%d%s" % (typename, block, "dq" if dq else "")
            absmax = consts[base + ".absmax"]
            if dq:
                absmax = dequantized_absmax(absmax, consts[base + ".absmax2"], dmap)
            x = rng.standard_normal((m, k)).astype(F32)
            xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
            np.save(xp, x)
            q8c("run", q_ir, "-i", xp, "-o", "y=" + yp)
            want = reference_linear(x, consts[base + ".codes"], absmax, table, block, b)
            same(t, "interp %s:%d%s%s = numpy" % (typename, block, " dq" if dq else "",
                                                   " bias" if bias else ""), want, np.load(yp))


# What each variant's kernel must contain (codegen/nf4.c's lookups); keyed
# by the variant names of --list-targets, every row needs one.
ASM_EXPECTED = {
    "avx512vnni": [r"vperm(d|ps)\s+%zmm"],
    "avxvnni": [r"vpshufb\s+%ymm", r"vpunpcklbw\s+%ymm", r"vpunpckhwd\s+%ymm"],
    "avx2": [r"vpshufb\s+%ymm", r"vpunpcklbw\s+%ymm", r"vpunpckhwd\s+%ymm"],
    "generic": [r"mulps\s+%xmm"],
    "aarch64-i8mm": [r"tbl\s+v\d+\.16b, \{ v\d+\.16b, v\d+\.16b, v\d+\.16b, v\d+\.16b \}"],
    "aarch64-dotprod": [r"tbl\s+v\d+\.16b, \{ v\d+\.16b, v\d+\.16b, v\d+\.16b, v\d+\.16b \}"],
    "aarch64": [r"tbl\s+v\d+\.16b, \{ v\d+\.16b, v\d+\.16b, v\d+\.16b, v\d+\.16b \}"],
}
ASM_FORBIDDEN = {"generic": [r"vperm", r"%ymm", r"pshufb"], "avx512vnni": [r"pshufb"]}


def kernel_asm(asm):
    """The text of the 4-bit kernel functions of an assembly file (private
    functions: .L labels, up to their .Lfunc_end)."""
    out, keep = [], False
    for line in asm.splitlines():
        if re.match(r"^\"?\.L\S*q8_(gemv|gemm)_(nf4|fp4)\S*:", line):
            keep = True
        elif line.startswith(".Lfunc_end"):
            keep = False
        if keep:
            out.append(line)
    return "\n".join(out)


def test_asm(t, rng):
    check_expectations(t, "nf4 assembly", [v.name for v in TARGETS], ASM_EXPECTED)
    d = tmpdir()
    n, k = 40, 256
    model = linear_model(d, k, n, rng.standard_normal((n, k)).astype(F32),
                         rng.standard_normal(n).astype(F32))
    q_ir, _, _ = quantized(d, model, ["--weights=nf4:64"])
    for v in TARGETS:
        if v.name not in ASM_EXPECTED:
            continue
        for batch in (1, 3):
            asm_path = os.path.join(d, "%s-%d.s" % (v.name, batch))
            r = q8c(q_ir, "--batch", batch, "--target=" + v.name, "--emit=asm", "-o", asm_path,
                    check=False)
            if not t.check("asm %s M=%d compiles" % (v.name, batch), r.returncode == 0, r.stderr):
                continue
            with open(asm_path) as f:
                body = kernel_asm(f.read())
            for pat in ASM_EXPECTED[v.name]:
                t.check("asm %s M=%d has /%s/" % (v.name, batch, pat), re.search(pat, body),
                        body[:400])
            for pat in ASM_FORBIDDEN.get(v.name, []):
                t.check("asm %s M=%d lacks /%s/" % (v.name, batch, pat),
                        not re.search(pat, body), "")


def test_variants(t, rng, dmap):
    """Each variant (x86 here, the JIT, aarch64 under qemu) against the
    interpreter over M, K, N and the formats, bit for bit."""
    x86_here = [v.name for v in TARGETS if v.arch == "x86_64" and v.runs_here]
    a64 = [v.name for v in TARGETS if v.arch == "aarch64"]
    why_a64 = a64_reason()
    cases = [(1, 64, 1, "nf4", 64, False), (1, 256, 37, "nf4", 64, False),
             (1, 512, 65, "fp4", 128, False), (1, 128, 130, "nf4", 32, True),
             (2, 256, 5, "fp4", 256, True), (3, 64, 7, "nf4", 32, False),
             (5, 320, 33, "nf4", 64, True), (9, 256, 64, "fp4", 64, False),
             (16, 1024, 70, "nf4", 64, False), (1, 4096, 96, "nf4", 64, False)]
    for m, k, n, typename, block, dq in cases:
        if dq and dmap is None:
            continue
        label = "%s:%d%s M=%d K=%d N=%d" % (typename, block, " dq" if dq else "", m, k, n)
        d = tmpdir()
        b = rng.standard_normal(n).astype(F32) if n % 2 else None
        model = linear_model(d, k, n, rng.standard_normal((n, k)).astype(F32), b)
        q_ir, _, _ = quantized(d, model, ["--weights=%s:%d" % (typename, block)] +
                               (["--double-quant"] if dq else []))
        x = rng.standard_normal((m, k)).astype(F32)
        xp, ref = os.path.join(d, "x.npy"), os.path.join(d, "ref.npy")
        np.save(xp, x)
        q8c("run", q_ir, "-i", xp, "-o", "y=" + ref)
        want = np.load(ref)
        so = os.path.join(d, "x86.so")
        q8c(q_ir, "--batch", m, "--target=" + ",".join(x86_here), "-o", so)
        for isa in x86_here:
            out = os.path.join(d, "y-%s.npy" % isa)
            q8c("run", so, "-i", xp, "-o", "y=" + out, env={"Q8_ISA": isa})
            same(t, "%s %s" % (label, isa), want, np.load(out))
        out = os.path.join(d, "y-jit.npy")
        q8c("run", q_ir, "--jit", "-i", xp, "-o", "y=" + out)
        same(t, "%s jit" % label, want, np.load(out))
        if why_a64:
            t.skip("%s aarch64" % label, why_a64)
            continue
        so = os.path.join(d, "a64.so")
        q8c(q_ir, "--batch", m, "--target=" + ",".join(a64), "-o", so)
        for isa in a64:
            out = os.path.join(d, "y-%s.npy" % isa)
            env = dict(os.environ, Q8_ISA=isa)
            r = subprocess.run(["qemu-aarch64", "-cpu", "max", "-L", SYSROOT,
                                os.path.join(A64, "run_model"), so, "-i", xp, "-o", out],
                               capture_output=True, text=True, env=env, timeout=600)
            if t.check("%s %s runs" % (label, isa),
                       r.returncode == 0 and ("variant: %s\n" % isa) in r.stdout,
                       r.stdout + r.stderr):
                same(t, "%s %s" % (label, isa), want, np.load(out))


def test_sizes(t, rng):
    """Bits per weight of the stored constants: 4 + 32/G, and with double
    quantization 4 + 8/G + 32 (blocks of 256 maxima + the mean) / (N K)."""
    n, k = 256, 1024
    w = rng.standard_normal((n, k)).astype(F32)
    for typename, block, dq, want in (("nf4", 64, False, 4.5), ("nf4", 64, True, None),
                                      ("fp4", 32, False, 5.0), ("nf4", 256, False, 4.125)):
        d = tmpdir()
        model = linear_model(d, k, n, w, None)
        _, _, consts = quantized(d, model, ["--weights=%s:%d" % (typename, block)] +
                                 (["--double-quant"] if dq else []))
        bits = 8 * sum(a.nbytes for a in consts.values()) / (n * k)
        groups = n * k // block
        if want is None:
            want = 4 + 8 / block + 32 * ((groups + 255) // 256 + 1) / (n * k)
        t.check("%s:%d%s: %.4f bits per weight" % (typename, block, " dq" if dq else "", bits),
                abs(bits - want) < 1e-9, "want %.6f" % want)


def fmt_size(n):
    """A byte count as the report prints it (test_report.py's fmt_size)."""
    if -1024 < n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        v /= 1024
        s = f"{v:.1f} {unit}"
        if abs(float(s.split()[0])) < 1024:
            return s
    return s


def size_line(label, f32_bytes, q_bytes):
    return (f"model size: f32 {fmt_size(f32_bytes)}, {label} {fmt_size(q_bytes)} "
            f"({f32_bytes / q_bytes:.2f}x smaller, {fmt_size(f32_bytes - q_bytes)} saved)")


def test_overrides(t, rng):
    """--weights-for over --weights=nf4:G, and the report's size line."""
    d = tmpdir()
    w1 = rng.standard_normal((64, 128)).astype(F32)
    b1 = rng.standard_normal(64).astype(F32)
    w2 = rng.standard_normal((10, 64)).astype(F32)
    b2 = rng.standard_normal(10).astype(F32)
    model = write_model(d, "two", """model two {
  weights "WEIGHTS"
  input %x : f32[?, 128]
  %h = linear %x, @w1, @b1
  %y = linear %h, @w2, @b2
  output %y
}
""", {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    f32_bytes = 4 * (w1.size + b1.size + w2.size + b2.size)
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((40, 128)).astype(F32))
    for opts, ops, label in (
            (["--weights=nf4:64", "--weights-for=@w2:s8-per-channel", "--dynamic"],
             ["linear_4bit", "qlinear_dyn"], None),
            (["--weights=nf4:64", "--weights-for=@w1:s4-per-group:32", "--dynamic"],
             ["qlinear_grp", "linear_4bit"], None),
            (["--weights=fp4:32", "--weights-for=@w1:s8-per-tensor,@w2:u4-per-group:32",
              "--dynamic"], ["qlinear_dyn", "qlinear_grp"], None),
            (["--weights=nf4:64"], ["linear_4bit", "linear_4bit"], "nf4:64"),
            (["--weights=nf4:64", "--weights-for=@w2:s8-per-channel"],
             ["linear_4bit", "qgemm"], "nf4:64 + int8"),
            (["--weights=fp4:32", "--double-quant"], ["linear_4bit", "linear_4bit"], "fp4:32")):
        name = " ".join(opts)
        q_ir, text, consts = quantized(d, model, opts + (["--calib", calib] if label else []))
        have = re.findall(r"= (\w+) %", text)
        t.check("%s: %s" % (name, " then ".join(ops)), have == ops, str(have))
        if not label:
            continue
        r = q8c(model, *opts, "--calib", calib, "--report", "-o", os.path.join(d, "q.so"))
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("model size:")]
        want = size_line(label, f32_bytes, sum(a.nbytes for a in consts.values()))
        t.check("%s: report size line '%s'" % (name, want), lines == [want], str(lines))


def test_errors(t, rng):
    d = tmpdir()
    model = linear_model(d, 96, 8, rng.standard_normal((8, 96)).astype(F32), None)
    r = q8c(model, "--weights=nf4:48", "-o", os.path.join(d, "q.ir"), check=False)
    t.check("--weights=nf4:48 is refused", r.returncode != 0 and
            "--weights=nf4:G takes a block size G of 32, 64, 128 or 256, not '48'" in r.stderr,
            r.stderr)
    r = q8c(model, "--double-quant", "-o", os.path.join(d, "q.ir"), check=False)
    t.check("--double-quant without 4-bit weights is refused", r.returncode != 0 and
            "--double-quant quantizes 4-bit block maxima: it needs --weights=nf4:G or fp4:G"
            in r.stderr, r.stderr)
    # K = 96 is not a multiple of 64: int8 instead, with a note.
    r = q8c(model, "--weights=nf4:64", "-o", os.path.join(d, "q.ir"))
    t.check("K not a multiple of the block: int8, with a note",
            "quantize: @w has K = 96, not a multiple of the block (64): int8 instead of nf4"
            in r.stderr, r.stderr)
    bad = write_model(d, "bad", """model bad {
  weights "WEIGHTS"
  input %x : f32[1, 96]
  %y = linear_4bit %x, @c, @a {block = 48}
  output %y
}
""", {"c": np.zeros((4, 48), np.uint8), "a": np.ones((4, 2), F32)})
    r = q8c(bad, "-o", os.path.join(d, "bad.so"), check=False)
    t.check("block = 48 is refused", "linear_4bit: block must be 32, 64, 128 or 256, not 48"
            in r.stderr, r.stderr)


def main():
    t = Tally()
    rng = np.random.default_rng(4)
    dmap = dynamic_map()
    test_quantization(t, rng, dmap)
    test_interp(t, rng, dmap)
    test_sizes(t, rng)
    test_errors(t, rng)
    test_overrides(t, rng)
    test_asm(t, rng)
    test_variants(t, rng, dmap)
    sys.exit(t.finish())


if __name__ == "__main__":
    main()
