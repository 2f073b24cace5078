#!/usr/bin/python3
"""The int8 attention matmuls and a `--dynamic` layer, before and after
codegen/attention.c, beside the constant-weight qgemm at the same shapes.

Cases (one thread, batch 1), each a model of one layer:
  Q.K^T   qmatmul u8 x u8 -> f32, [1, 12, 128, 64] x [1, 12, 64, 128]
  P.V     qmatmul u8 x u8 -> f32, [1, 12, 128, 128] x [1, 12, 128, 64]
  (the attention matmuls of a GPT-2-small layer: 12 heads, T = 128, hd = 64)
  the same two as qmatmul_dyn (f32 operands quantized at run time)
  qlinear_dyn 128 x 768 -> 3072 (`--dynamic` linear, with bias)
and, for comparison, the constant-weight qgemm (a statically quantized
linear, f32 in and out) with the same M x K x N per head: [1536, 64] x
[64, 128] for Q.K^T, [1536, 128] x [128, 64] for P.V, and 128 x 768 ->
3072.

Each model is compiled by the old q8c (OLD, default /work/main/build/q8c:
qmatmul and the dynamic layers through the scalar reference calls) and the
new (NEW, default build/q8c), for the native variant, and timed with
`q8c bench --json` (its median of RUNS runs), the builds interleaved ROUNDS
times; the table gives the median of the rounds' medians, G MAC/s, and the
new kernels' speed as a fraction of the qgemm's.

  /usr/bin/python3 bench/attention.py [NEW [OLD]]
"""
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402

ROUNDS = 5
RUNS = {"old": 3, "new": 50}
F32 = np.float32


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=F32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def pair_ir(name, xs, bs, dyn):
    t = "f32" if dyn else "u8"
    op = "qmatmul_dyn %x, %b" if dyn else (
        "qmatmul %x, %b {x_scale = 0.05, x_zero_point = 131, x_dtype = u8, b_scale = 0.07, "
        "b_zero_point = 120, b_dtype = u8, dtype = f32}")
    return "model %s {\n  input %%x : %s[?, %s]\n  input %%b : %s[?, %s]\n  %%s = %s\n" \
           "  output %%s\n}\n" % (name, t, ", ".join(map(str, xs[1:])), t,
                                 ", ".join(map(str, bs[1:])), op)


def linear(d, name, m, k, n, rng):
    """A linear layer [?, k] -> [?, n] with its weights; the calibration
    samples (m rows) for the static form."""
    w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(F32)
    b = (rng.standard_normal(n) * 0.1).astype(F32)
    write_safetensors(os.path.join(d, name + ".safetensors"), {"w": w, "b": b})
    path = os.path.join(d, name + ".ir")
    with open(path, "w") as f:
        f.write('model %s {\n  weights "%s.safetensors"\n  input %%x : f32[?, %d]\n'
                '  %%y = linear %%x, @w, @b\n  output %%y\n}\n' % (name, name, k))
    x = rng.standard_normal((m, k)).astype(F32)
    np.save(os.path.join(d, name + ".x.npy"), x)
    return path


def run(cmd):
    return benchpy.run(cmd, timeout=1200)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    new = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build", "q8c")
    old = sys.argv[2] if len(sys.argv) > 2 else "/work/main/build/q8c"
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8c-attn-bench-")
    H, T, HD = 12, 128, 64
    cases = []  # (label, macs, {build: (so, inputs)})

    def pair(label, xs, bs, dyn):
        name = label.replace(".", "").replace(" ", "_").replace("^", "")
        ir = os.path.join(d, name + ".ir")
        with open(ir, "w") as f:
            f.write(pair_ir(name, xs, bs, dyn))
        ins = []
        for nm, shape in (("x", xs), ("b", bs)):
            p = os.path.join(d, "%s.%s.npy" % (name, nm))
            a = (rng.standard_normal(shape).astype(F32) if dyn
                 else rng.integers(0, 256, shape).astype(np.uint8))
            np.save(p, a)
            ins += ["-i", "%s=%s" % (nm, p)]
        return ir, ins

    def build(q8c, ir, tag, extra=(), batch=1):
        so = os.path.join(d, "%s.%s.so" % (os.path.basename(ir)[:-3], tag))
        run([q8c, ir, *extra, "--batch", str(batch), "-q", "-o", so])
        return so

    qk_x, qk_b = (1, H, T, HD), (1, H, HD, T)
    pv_x, pv_b = (1, H, T, T), (1, H, T, HD)
    for label, xs, bs, dyn in (("Q.K^T qmatmul", qk_x, qk_b, False),
                               ("P.V qmatmul", pv_x, pv_b, False),
                               ("Q.K^T qmatmul_dyn", qk_x, qk_b, True),
                               ("P.V qmatmul_dyn", pv_x, pv_b, True)):
        ir, ins = pair(label, xs, bs, dyn)
        macs = H * xs[2] * xs[3] * bs[3]
        cases.append((label, macs, {"old": (build(old, ir, "old"), ins),
                                    "new": (build(new, ir, "new"), ins)}))
    lin = linear(d, "ffn", T, 768, 3072, rng)
    ins = ["-i", "x=" + os.path.join(d, "ffn.x.npy")]
    cases.append(("qlinear_dyn 128x768x3072", T * 768 * 3072,
                  {"old": (build(old, lin, "old", ["--dynamic"], T), ins),
                   "new": (build(new, lin, "new", ["--dynamic"], T), ins)}))
    # The constant-weight qgemm at the same shapes.
    calib = {}
    for label, m, k, n in (("qgemm 1536x64x128 (as Q.K^T)", H * T, HD, T),
                           ("qgemm 1536x128x64 (as P.V)", H * T, T, HD),
                           ("qgemm 128x768x3072", T, 768, 3072)):
        name = "lin_%d_%d_%d" % (m, k, n)
        ir = linear(d, name, m, k, n, rng)
        calib[label] = os.path.join(d, name + ".x.npy")
        so = build(new, ir, "new", ["--calib", calib[label]], m)
        cases.append((label, m * k * n, {"new": (so, ["-i", "x=" + calib[label]])}))

    times = {(c[0], b): [] for c in cases for b in c[2]}
    for r in range(ROUNDS):
        for label, _, builds in cases:
            for b, (so, ins) in builds.items():
                out = run([new, "bench", so, *ins, "--threads", "1", "--warmup", "2",
                           "--runs", str(RUNS[b]), "--json"])
                times[(label, b)].append(json.loads(out)["latency_ms"]["median"])
        print("round %d of %d" % (r + 1, ROUNDS), file=sys.stderr)
    med = {key: float(np.median(v)) for key, v in times.items()}
    variant = json.loads(out)["variant"]

    gm = lambda macs, ms: macs / (ms * 1e-3) / 1e9  # noqa: E731
    ref = {"Q.K^T": "qgemm 1536x64x128 (as Q.K^T)", "P.V": "qgemm 1536x128x64 (as P.V)",
           "qlinear_dyn": "qgemm 128x768x3072"}
    print("variant %s, 1 thread, median of %d rounds (each the median of %d old / %d new runs)\n"
          % (variant, ROUNDS, RUNS["old"], RUNS["new"]))
    print("| layer | M MAC | before ms | after ms | speedup | after G MAC/s | qgemm G MAC/s "
          "| after / qgemm |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, macs, builds in cases:
        if "old" not in builds:
            continue
        o, n = med[(label, "old")], med[(label, "new")]
        q = ref[label.split()[0]]
        qg = gm(dict((c[0], c[1]) for c in cases)[q], med[(q, "new")])
        print("| %s | %.1f | %.2f | %.3f | %.0fx | %.1f | %.1f | %.2f |" % (
            label, macs / 1e6, o, n, o / n, gm(macs, n), qg, gm(macs, n) / qg))
    for label, macs, builds in cases:
        if "old" in builds:
            continue
        print("| %s | %.1f | | %.3f | | %.1f | | |" % (label, macs / 1e6, med[(label, "new")],
                                                    gm(macs, med[(label, "new")])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
