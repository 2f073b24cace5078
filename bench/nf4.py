#!/usr/bin/python3
"""GEMV and small GEMM with 4-bit weights (--weights=nf4:64, W4A32,
codegen/nf4.c) against q8c's int8 per-channel layers (static, u8
activations, the qgemm kernels), one thread, on this machine's best variant.

For each shape M x K x N (1x4096x4096, 1x4096x11008, 1x11008x4096,
16x4096x4096 by default) it writes a one-linear model (no bias) with
Gaussian weights, compiles it both ways (int8 with --calib on random rows),
loads both through libq8rt (ctypes) and times q8rt_run, alternating the
two ROUNDS times, RUNS runs each; the times are medians of the calling
thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which other processes on a
busy machine do not inflate; wall-time medians are printed too. Bytes are
the weight constants a run reads (codes + block maxima, or int8 weights +
folded bias + multipliers); GB/s is bytes / median time. The read
bandwidth is measured in the same run by a small C loop (compiled here with
cc -O2 -mavx2) summing a buffer of the same size as each format's weights
with 256-bit loads, so "% of read BW" compares each kernel with a plain
read of as many bytes.

  /usr/bin/python3 bench/nf4.py [path/to/q8c] [--rounds N] [--runs N]
                                [--shapes 1x4096x4096,16x4096x4096]
                                [--weights nf4:64]
"""
import ctypes
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402
from benchpy import Model, load_rt  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
ROUNDS = int(OPTS.get("--rounds", 5))
RUNS = int(OPTS.get("--runs", 10))
SHAPES = [tuple(int(v) for v in s.split("x")) for s in
          OPTS.get("--shapes", "1x4096x4096,1x4096x11008,1x11008x4096,16x4096x4096").split(",")]
W4 = OPTS.get("--weights", "nf4:64")

READ_C = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stddef.h>
/* Sum of a buffer read with 256-bit loads, four independent sums. */
int64_t read_sum(const void *p, size_t bytes) {
  const __m256i *v = p;
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i + 4 <= bytes / 32; i += 4) {
    a = _mm256_add_epi64(a, _mm256_load_si256(v + i));
    b = _mm256_add_epi64(b, _mm256_load_si256(v + i + 1));
    c = _mm256_add_epi64(c, _mm256_load_si256(v + i + 2));
    d = _mm256_add_epi64(d, _mm256_load_si256(v + i + 3));
  }
  a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  int64_t s[4];
  _mm256_storeu_si256((__m256i *)s, a);
  return s[0] + s[1] + s[2] + s[3];
}
"""


def run(cmd, env=None):
    return benchpy.run(cmd, env, timeout=1200)


class Reader:
    """The read loop over an aligned buffer of `size` bytes."""

    def __init__(self, lib, size):
        self.lib = lib
        self.buf = np.ones(size + 64, np.uint8)
        off = (-self.buf.ctypes.data) % 64
        self.ptr = self.buf.ctypes.data + off
        self.size = size - size % 128

    def time(self, runs, warmup=2):
        cpu = []
        for i in range(warmup + runs):
            c0 = time.thread_time_ns()
            self.lib.read_sum(ctypes.c_void_p(self.ptr), ctypes.c_size_t(self.size))
            c1 = time.thread_time_ns()
            if i >= warmup:
                cpu.append((c1 - c0) / 1e6)
        return float(np.median(cpu))


def weight_bytes(st_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import read_safetensors
    return sum(a.nbytes for a in read_safetensors(st_path).values())


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    os.environ["Q8_THREADS"] = "1"
    d = tempfile.mkdtemp(prefix="q8-nf4-")
    with open(os.path.join(d, "read.c"), "w") as f:
        f.write(READ_C)
    run(["cc", "-O2", "-mavx2", "-shared", "-fPIC", "-o", os.path.join(d, "read.so"),
         os.path.join(d, "read.c")])
    rlib = ctypes.CDLL(os.path.join(d, "read.so"))
    rlib.read_sum.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    rlib.read_sum.restype = ctypes.c_int64
    rt = load_rt(Q8C)
    variant = run([Q8C, "--list-targets"]).split("\n")
    native = next(l.split()[0] for l in variant if l.endswith("runs-here"))
    rng = np.random.default_rng(1)
    rows = []
    for m, k, n in SHAPES:
        w = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
        wname = "w-%dx%dx%d.safetensors" % (m, k, n)
        write_safetensors(os.path.join(d, wname), {"w": w})
        ir = os.path.join(d, "lin-%dx%dx%d.ir" % (m, k, n))
        with open(ir, "w") as f:
            f.write('model lin {\n  weights "%s"\n  input %%x : f32[?, %d]\n'
                    '  %%y = linear %%x, @w\n  output %%y\n}\n' % (wname, k))
        calib = os.path.join(d, "calib.npy")
        np.save(calib, rng.standard_normal((16, k)).astype(np.float32))
        so, nbytes = {}, {}
        for how, opts in (("int8", ["--calib", calib]), (W4, ["--weights=" + W4])):
            q_ir = os.path.join(d, "q-%s-%dx%dx%d.ir" % (how.replace(":", ""), m, k, n))
            run([Q8C, ir, *opts, "-o", q_ir])
            nbytes[how] = weight_bytes(q_ir[:-3] + ".safetensors")
            so[how] = q_ir[:-3] + ".so"
            run([Q8C, q_ir, "--batch", str(m), "--target=native", "-o", so[how]])
        x = rng.standard_normal((m, k)).astype(np.float32)
        models = {how: Model(rt, p, x, n) for how, p in so.items()}
        readers = {how: Reader(rlib, b) for how, b in nbytes.items()}
        times = {how: [] for how in models}
        rtimes = {how: [] for how in models}
        for _ in range(ROUNDS):
            for how in models:
                times[how].append(models[how].time(RUNS, warmup=2))
                rtimes[how].append(readers[how].time(RUNS))
        med = {h: (float(np.median([c for c, _ in t])), float(np.median([w for _, w in t])))
               for h, t in times.items()}
        rmed = {h: float(np.median(t)) for h, t in rtimes.items()}
        rows.append(((m, k, n), nbytes, med, rmed))
        print("%dx%dx%d  %s" % (m, k, n, "  ".join(
            "%s %.3f ms (wall %.3f), %.1f MB, read %.3f ms" % (h, med[h][0], med[h][1],
                                                              nbytes[h] / 1e6, rmed[h])
            for h in med)), flush=True)
    print("\nOne thread, %s, thread CPU time medians (%d rounds x %d runs)\n" % (native, ROUNDS,
                                                                               RUNS))
    print("| M x K x N | format | weight bytes | median ms | GB/s | read BW GB/s | % of read BW "
          "| speed-up vs int8 |")
    print("|---|---|---|---|---|---|---|---|")
    for (m, k, n), nbytes, med, rmed in rows:
        for h in ("int8", W4):
            gbs = nbytes[h] / med[h][0] / 1e6
            rbw = nbytes[h] / rmed[h] / 1e6
            print("| %dx%dx%d | %s | %.1f MB | %.3f | %.1f | %.1f | %.0f%% | %s |" % (
                m, k, n, h, nbytes[h] / 1e6, med[h][0], gbs, rbw, 100 * gbs / rbw,
                "1.00x" if h == "int8" else "%.2fx" % (med["int8"][0] / med[h][0])))


if __name__ == "__main__":
    main()
