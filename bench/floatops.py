#!/usr/bin/python3
"""The float ops of a transformer layer, scalar reference calls against the
vector code of codegen/floatops.c, on this machine's best variant.

For each case (transformer-sized: softmax over [12, 128, 128] plain and
causal, gelu erf and tanh over [128, 3072], layernorm and rmsnorm over
[128, 768], add of two [128, 768] and of a [768] bias, silu over [128,
3072]) it writes a one-op float model, compiles it twice, as q8c does
(the vector code) and with Q8_SCALAR_FLOATOPS=1 (every float op a call of
ir/refops.c's scalar function, as before this code), and times both with
`q8c bench` on the same random input, alternating ROUNDS times; it prints
the median of the medians (one thread) and the ratio. Both give the same
bits (tests/py/test_floatops.py); this measures only speed.

  /usr/bin/python3 bench/floatops.py [path/to/q8c] [--rounds N] [--runs N]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

args = [a for a in sys.argv[1:] if not a.startswith("--")]
Q8C = os.path.abspath(args[0] if args else "build/q8c")
ROUNDS = int(dict(zip(sys.argv, sys.argv[1:])).get("--rounds", 5))
RUNS = int(dict(zip(sys.argv, sys.argv[1:])).get("--runs", 20))

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
]


def run(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)
    if r.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), r.stderr))
    return r.stdout


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8-floatops-")
    rows = []
    for label, ty, op, weights in CASES:
        dims = [int(v) for v in ty[4:-1].split(",")]
        tensors = {k: rng.uniform(0.5, 1.5, n).astype(np.float32) for k, n in weights.items()}
        text = "model b {\n%s  input %%x : %s\n  %%y = %s\n  output %%y\n}\n" % (
            '  weights "w.safetensors"\n' if tensors else "", ty, op)
        ir = os.path.join(d, "m.ir")
        with open(ir, "w") as f:
            f.write(text)
        if tensors:
            write_safetensors(os.path.join(d, "w.safetensors"), tensors)
        x = os.path.join(d, "x.npy")
        np.save(x, (rng.standard_normal(dims) * 3).astype(np.float32))
        sos = {}
        for how, env in (("scalar", {"Q8_SCALAR_FLOATOPS": "1"}), ("vector", {})):
            sos[how] = os.path.join(d, how + ".so")
            run([Q8C, ir, "-o", sos[how]], env)
        times = {"scalar": [], "vector": []}
        for _ in range(ROUNDS):
            for how in ("scalar", "vector"):
                out = run([Q8C, "bench", sos[how], "--json", "--runs", str(RUNS), "--warmup",
                           "3", "-i", "x=" + x])
                times[how].append(json.loads(out)["latency_ms"]["median"])
        med = {h: float(np.median(t)) for h, t in times.items()}
        rows.append((label, med["scalar"], med["vector"]))
        print("%-30s scalar %8.3f ms  vector %8.3f ms  %5.1fx" % (
            label, med["scalar"], med["vector"], med["scalar"] / med["vector"]), flush=True)
    print("\n| op | scalar reference call (ms) | vector code (ms) | speed-up |")
    print("|---|---|---|---|")
    for label, s, v in rows:
        print("| %s | %.3f | %.3f | %.1fx |" % (label, s, v, s / v))


if __name__ == "__main__":
    main()
