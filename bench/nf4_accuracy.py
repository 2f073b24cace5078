#!/usr/bin/python3
"""Accuracy of the 4-bit weight formats: SQNR against f32 of nf4:64 and
fp4:64, with and without --double-quant (and int8 per channel for scale),
on Gaussian and Student-t (3 degrees of freedom) weights [N, K].

q8c quantizes a one-linear model (no bias); the weights it stored are read
back and dequantized in numpy (w = table[code] * absmax, the maxima decoded
from their 8-bit codes with --double-quant), and the layer is run by the
interpreter (`q8c run`) on Gaussian inputs. Two figures per format:
weight SQNR = 10 log10(sum w^2 / sum (w - w_q)^2) over the matrix, and
output SQNR likewise over y = x W^T of M rows against the f32 layer in
double. Bits per weight count every stored constant.

  /usr/bin/python3 bench/nf4_accuracy.py [path/to/q8c] [--n 1024] [--k 4096]
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
N, K, M = int(OPTS.get("--n", 1024)), int(OPTS.get("--k", 4096)), 64
# tests/py/test_nf4.py's numpy port of the formats (it reads q8c's path
# from argv when imported).
sys.argv = [sys.argv[0], Q8C]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from q8test import read_safetensors, write_safetensors  # noqa: E402
from test_nf4 import FP4, NF4, dequantized_absmax, dynamic_map  # noqa: E402


def run(cmd):
    benchpy.run(cmd, timeout=1200)


def sqnr(ref, x):
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - x) ** 2))


def main():
    rng = np.random.default_rng(7)
    dmap = dynamic_map()
    d = tempfile.mkdtemp(prefix="q8-nf4acc-")
    x = rng.standard_normal((M, K)).astype(np.float32)
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "calib.npy"), x[:16])
    rows = []
    for dist in ("gaussian", "student-t3"):
        w = (rng.standard_normal((N, K)) if dist == "gaussian" else
             rng.standard_t(3, (N, K))).astype(np.float32) * np.float32(0.02)
        write_safetensors(os.path.join(d, "w.safetensors"), {"w": w})
        with open(os.path.join(d, "lin.ir"), "w") as f:
            f.write('model lin {\n  weights "w.safetensors"\n  input %%x : f32[?, %d]\n'
                    '  %%y = linear %%x, @w\n  output %%y\n}\n' % K)
        y_ref = x.astype(np.float64) @ w.astype(np.float64).T
        for label, opts in (("int8 per channel (dynamic)", ["--dynamic"]),
                            ("nf4:64", ["--weights=nf4:64"]),
                            ("nf4:64 double quant", ["--weights=nf4:64", "--double-quant"]),
                            ("fp4:64", ["--weights=fp4:64"]),
                            ("fp4:64 double quant", ["--weights=fp4:64", "--double-quant"])):
            q_ir = os.path.join(d, "q.ir")
            run([Q8C, os.path.join(d, "lin.ir"), *opts, "-o", q_ir])
            c = read_safetensors(os.path.join(d, "q.safetensors"))
            bits = 8 * sum(a.nbytes for a in c.values()) / (N * K)
            if label.startswith("int8"):
                wq = c["w.q"].astype(np.float32) * c["w.scale"][:, None]
            else:
                fmt = label[:3]
                base = "w.%s_64%s" % (fmt, "dq" if "double" in label else "")
                codes = c[base + ".codes"]
                absmax = c[base + ".absmax"]
                if "double" in label:
                    absmax = dequantized_absmax(absmax, c[base + ".absmax2"], dmap)
                cc = np.empty((N, K), np.uint8)
                cc[:, ::2] = codes & 15
                cc[:, 1::2] = codes >> 4
                table = NF4 if fmt == "nf4" else FP4
                wq = (table[cc] * np.repeat(absmax, 64, axis=1)).astype(np.float32)
            run([Q8C, "run", q_ir, "-i", os.path.join(d, "x.npy"), "-o",
                 "y=" + os.path.join(d, "y.npy")])
            y = np.load(os.path.join(d, "y.npy"))
            rows.append((dist, label, bits, sqnr(w, wq), sqnr(y_ref, y)))
            print("%-11s %-22s %.3f bits  weights %.2f dB  output %.2f dB" % rows[-1], flush=True)
    print("\nW [%d, %d], y = x W^T over %d Gaussian rows; SQNR against f32 (dB)\n" % (N, K, M))
    print("| weights | format | bits/weight | weight SQNR | output SQNR |")
    print("|---|---|---|---|---|")
    for dist, label, bits, sw, sy in rows:
        print("| %s | %s | %.3f | %.2f | %.2f |" % (dist, label, bits, sw, sy))


if __name__ == "__main__":
    main()
