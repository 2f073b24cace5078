#!/usr/bin/python3
"""Compile time of a long linear+relu chain: q8c's passes must stay linear.

Writes a 2,000- and a 16,000-layer chain (width 8, calibrated ranges written
in the IR, weights in a safetensors file) to a temporary directory, times
`q8c chain.ir --emit=ir -o /dev/null` (parse, calibrate-free quantize,
fuse-requant, fold-constants, verify after each pass, print) for each and
prints both times and their ratio. The times are CPU time (user + system
of the q8c process), the best of RUNS runs, which a busy machine disturbs
less than wall time.
Exits 1 when the 16k/2k ratio exceeds 10 (linear is 8): a pass that
rescans the graph per node makes it about 64.

  /usr/bin/python3 bench/compile_chain.py [path/to/q8c]   (default build/q8c)
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

WIDTH = 8
SIZES = (2000, 16000)
MAX_RATIO = 10.0
RUNS = 5


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_chain(d, layers):
    rng = np.random.default_rng(0)
    tensors = {}
    lines = ["model chain {", '  weights "chain.safetensors"',
             "  input %%x : f32[?, %d] {range = [-1, 1]}" % WIDTH]
    prev = "x"
    for i in range(layers):
        tensors["w%d" % i] = rng.standard_normal((WIDTH, WIDTH)) * 0.3
        tensors["b%d" % i] = rng.standard_normal(WIDTH) * 0.1
        lines.append("  %%h%d = linear %%%s, @w%d, @b%d {range = [-2, 2]}" % (i, prev, i, i))
        lines.append("  %%a%d = relu %%h%d {range = [0, 2]}" % (i, i))
        prev = "a%d" % i
    lines += ["  output %%%s" % prev, "}"]
    write_safetensors(os.path.join(d, "chain.safetensors"), tensors)
    path = os.path.join(d, "chain.ir")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    q8c = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "q8c")
    times = []
    with tempfile.TemporaryDirectory() as d:
        for n in SIZES:
            ir = write_chain(d, n)
            out = os.path.join(d, "out.ir")
            best = None
            for _ in range(RUNS):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                r = subprocess.run([q8c, ir, "--emit=ir", "-o", out],
                                   capture_output=True, text=True)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if r.returncode != 0:
                    print("q8c failed on %d layers:\n%s" % (n, r.stderr), file=sys.stderr)
                    return 1
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                if best is None or cpu < best[0]:
                    best = (cpu, wall)
            times.append(best[0])
            print("%6d layers: %.3f s CPU, %.3f s wall" % (n, best[0], best[1]))
    ratio = times[1] / max(times[0], 1e-3)
    print("ratio %dk/%dk: %.1f (limit %.0f; linear is %.0f)" %
          (SIZES[1] // 1000, SIZES[0] // 1000, ratio, MAX_RATIO, SIZES[1] / SIZES[0]))
    return 1 if ratio > MAX_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
