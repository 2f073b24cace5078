#!/usr/bin/python3
"""The cost of --outliers (qlinear_outl, LLM.int8) against plain --dynamic
(qlinear_dyn) at the same shapes, one thread.

Cases, each a model of one linear layer with bias: 128 x 768 -> 3072 (a
GPT-2-small MLP) and 1 x 4096 -> 4096 (an LLM's decode step). Each is
compiled with --dynamic and with --outliers=6 for the native variant and
timed with `q8c bench --json` (its median of RUNS runs) on inputs with no
outlier column, and with C columns of the batch at 20-60x (C = 4, 32). The
builds are interleaved ROUNDS times; the table gives the median of the
rounds' medians and the ratio to --dynamic on the same input.

  /usr/bin/python3 bench/outliers.py [Q8C]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROUNDS = 5
RUNS = 30
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


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    q8c = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/q8c")
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8c-bench-outl-")
    cases = []
    for m, k, n in ((128, 768, 3072), (1, 4096, 4096)):
        name = "lin_%d_%d_%d" % (m, k, n)
        bound = 1 / np.sqrt(k)
        write_safetensors(os.path.join(d, name + ".safetensors"),
                          {"w": rng.uniform(-bound, bound, (n, k)),
                           "b": rng.uniform(-bound, bound, n)})
        ir = os.path.join(d, name + ".ir")
        with open(ir, "w") as f:
            f.write('model %s {\n  weights "%s.safetensors"\n  input %%x : f32[?, %d]\n'
                    '  %%y = linear %%x, @w, @b\n  output %%y\n}\n' % (name, name, k))
        builds = {}
        for tag, opt in (("dynamic", "--dynamic"), ("outliers", "--outliers=6")):
            so = os.path.join(d, "%s.%s.so" % (name, tag))
            run([q8c, ir, opt, "--batch", str(m), "-q", "-o", so])
            builds[tag] = so
        for cols in (0, 4, 32):
            x = np.clip(rng.standard_normal((m, k)), -5, 5).astype(F32)
            pick = rng.choice(k, cols, replace=False)
            x[:, pick] *= rng.uniform(20, 60, cols).astype(F32)
            xp = os.path.join(d, "%s.x%d.npy" % (name, cols))
            np.save(xp, x)
            cases.append(("%dx%dx%d" % (m, k, n), cols, builds, xp))
    times = {}
    for r in range(ROUNDS):
        for label, cols, builds, xp in cases:
            for tag, so in builds.items():
                out = run([q8c, "bench", so, "-i", "x=" + xp, "--threads", "1", "--warmup", "2",
                           "--runs", str(RUNS), "--json"])
                times.setdefault((label, cols, tag), []).append(
                    json.loads(out)["latency_ms"]["median"])
        print("round %d of %d" % (r + 1, ROUNDS), file=sys.stderr)
    variant = json.loads(out)["variant"]
    med = {key: float(np.median(v)) for key, v in times.items()}
    print("variant %s, 1 thread, median of %d rounds (each the median of %d runs)\n"
          % (variant, ROUNDS, RUNS))
    print("| layer | outlier columns | --dynamic ms | --outliers=6 ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, cols, _, _ in cases:
        dy, ol = med[(label, cols, "dynamic")], med[(label, cols, "outliers")]
        print("| %s | %d | %.3f | %.3f | %.2f |" % (label, cols, dy, ol, ol / dy))


if __name__ == "__main__":
    main()
