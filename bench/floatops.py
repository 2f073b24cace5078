#!/usr/bin/python3
"""The float ops of a transformer layer, scalar reference calls against the
vector code of codegen/floatops.c, on this machine's best variant.

For each case (transformer-sized: softmax over [12, 128, 128] plain and
causal, gelu erf and tanh over [128, 3072], layernorm and rmsnorm over
[128, 768], add of two [128, 768] and of a [768] bias, silu over [128,
3072], a u8 quantize and dequantize of [128, 768]) it writes a one-op float model, compiles it twice, as q8c does
(the vector code) and with Q8_SCALAR_FLOATOPS=1 (every float op a call of
ir/refops.c's scalar function, as before this code), and times both with
`q8c bench` on the same random input, alternating ROUNDS times; it prints
the median (one thread) and the ratio. Both give the same bits
(tests/py/test_floatops.py); this measures only speed.

Each run is timed in this process through libq8rt (ctypes) by the CPU time
of the calling thread (CLOCK_THREAD_CPUTIME_ID), which time slices given
to other processes on a busy machine do not inflate (wall time does, and
more for long runs than short ones); wall-time medians are printed too.

--baseline Q8C: a q8c built from the tree before the vector float ops
(float ops in double with libm's exp, erf, tanh, all reference calls); its
models are timed as a third column, "libm".

  /usr/bin/python3 bench/floatops.py [path/to/q8c] [--rounds N] [--runs N]
                                     [--baseline path/to/old/q8c]
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402
from benchpy import Model, load_rt  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
ROUNDS = int(OPTS.get("--rounds", 5))
RUNS = int(OPTS.get("--runs", 20))
BASELINE = OPTS.get("--baseline")

CASES = [
    ("softmax [12,128,128]", "f32[12, 128, 128]", "softmax %x", {}),
    ("softmax causal [12,128,128]", "f32[12, 128, 128]", "softmax %x {causal = 1}", {}),
    ("gelu [128,3072]", "f32[128, 3072]", "gelu %x", {}),
    ("gelu tanh [128,3072]", "f32[128, 3072]", "gelu %x {approximate = tanh}", {}),
    ("silu [128,3072]", "f32[128, 3072]", "silu %x", {}),
    ("layernorm [128,768]", "f32[128, 768]", "layernorm %x, @g, @b {eps = 1e-5}",
     {"g": 768, "b": 768}),
    ("rmsnorm [128,768]", "f32[128, 768]", "rmsnorm %x, @g {eps = 1e-6}", {"g": 768}),
    ("add [128,768] + [128,768]", "f32[128, 768]", "add %x, %x", {}),
    ("add bias [128,768] + [768]", "f32[128, 768]", "add %x, @b", {"b": 768}),
    ("quantize + dequantize [128,768]", "f32[128, 768]",
     "%q = quantize %x {scale = 0.05, zero_point = 128, dtype = u8}\n"
     "  %y = dequantize %q {scale = 0.05, zero_point = 128}", {}),
]


def run(cmd, env=None):
    return benchpy.run(cmd, env, timeout=600)


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    rt = load_rt(Q8C)
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8-floatops-")
    rows = []
    for label, ty, op, weights in CASES:
        dims = [int(v) for v in ty[4:-1].split(",")]
        tensors = {k: rng.uniform(0.5, 1.5, n).astype(np.float32) for k, n in weights.items()}
        body = op if op.startswith("%") else "%y = " + op
        text = "model b {\n%s  input %%x : %s\n  %s\n  output %%y\n}\n" % (
            '  weights "w.safetensors"\n' if tensors else "", ty, body)
        ir = os.path.join(d, "m.ir")
        with open(ir, "w") as f:
            f.write(text)
        if tensors:
            write_safetensors(os.path.join(d, "w.safetensors"), tensors)
        x = os.path.join(d, "x.npy")
        np.save(x, (rng.standard_normal(dims) * 3).astype(np.float32))
        sos = {}
        builds = [("scalar", Q8C, {"Q8_SCALAR_FLOATOPS": "1"}), ("vector", Q8C, {})]
        if BASELINE:
            builds.insert(0, ("libm", os.path.abspath(BASELINE), {}))
        for how, q8c, env in builds:
            sos[how] = os.path.join(d, "%s-%d.so" % (how, len(rows)))
            run([q8c, ir, "-o", sos[how], "--target=native"], env)
        xs = np.load(x)
        models = {how: Model(rt, so, xs) for how, so in sos.items()}
        times = {how: [] for how in sos}
        for _ in range(ROUNDS):
            for how, m in models.items():
                times[how].append(m.time(RUNS))
        med = {h: (float(np.median([c for c, _ in t])), float(np.median([w for _, w in t])))
               for h, t in times.items()}
        rows.append((label, med))
        print("%-30s %s" % (label, "  ".join(
            "%s %.3f ms (wall %.3f)" % (h, c, w) for h, (c, w) in med.items())), flush=True)
    libm = "| libm reference call (ms) " if BASELINE else ""
    print("\n| op %s| scalar reference call (ms) | vector code (ms) | vector vs scalar %s|" % (
        libm, "| vector vs libm " if BASELINE else ""))
    print("|---" * (5 if BASELINE else 4) + ("|---|" if BASELINE else "|"))
    for label, med in rows:
        s, v = med["scalar"][0], med["vector"][0]
        if BASELINE:
            b = med["libm"][0]
            print("| %s | %.3f | %.3f | %.3f | %.1fx | %.1fx |" % (label, b, s, v, s / v, b / v))
        else:
            print("| %s | %.3f | %.3f | %.1fx |" % (label, s, v, s / v))

if __name__ == "__main__":
    main()
