#!/usr/bin/python3
"""Weight formats at batch 1: one linear layer M x K x N (y = x W^T + b),
compiled by q8c for this machine (--target=native) with each weight format,
timed on one thread against the read bandwidth measured in the same run.

Formats (--formats, comma-separated; the default below):
  int8   --dynamic --weights=s8-per-channel: q8c's int8 GEMM (qlinear_dyn),
         the rows of x quantized at run time as the grouped formats' are
  s4-per-group:32, u4-per-group:32, s8-per-group:32, ...: qlinear_grp
  nf4:64 and any other name the weight-format table (ir/wformat.def) gains
         is passed to --weights as it is.

For each shape and format it reports the bytes of the compiled weights (the
.so's weight stream: packed weights, scales and zero points; measured from
the model's descriptor-free size difference is unreliable, so it is the
format's bits per weight times K N, plus the scales, from the table), the
median time of a run, the effective GB/s (weight bytes / time) and that as
a percentage of the read bandwidth of a buffer as large as the weights
(a C loop compiled here, summing 64-bit words with AVX2 when available).

Two placements:
  hot   one model, run repeatedly: its weights stay in the caches when they
        fit (32 MiB of L3 here)
  dram  enough copies of the model (separate .so files, so separate weight
        memory) that the weights of one round are over 3x the last-level
        cache, run in turn: every run reads its weights from DRAM; the
        bandwidth probe reads a buffer as large as all copies

Timing is the median over rounds of the thread's CPU time per run
(CLOCK_THREAD_CPUTIME_ID; other processes' time slices do not count: the
machine this was written on is shared), the bandwidth probe's likewise; the
per-line output gives the wall times beside them.

  /usr/bin/python3 bench/wformat.py [path/to/q8c] [--formats F,F] [--shapes
      1x4096x4096,...] [--rounds N] [--runs N] [--llc-mib 32]
"""
import ctypes
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402
from benchpy import Model, load_rt  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
FORMATS = OPTS.get("--formats", "int8,s4-per-group:32").split(",")
SHAPES = [tuple(int(v) for v in s.split("x")) for s in OPTS.get(
    "--shapes", "1x4096x4096,1x4096x11008,1x11008x4096,16x4096x4096").split(",")]
ROUNDS = int(OPTS.get("--rounds", 7))
RUNS = int(OPTS.get("--runs", 10))
LLC = int(OPTS.get("--llc-mib", 32)) << 20

# Bits per weight including scales (ir/wformat.def; f16 scales by default).
def bits_per_weight(fmt, k):
    if fmt == "int8":
        return 8 + 32.0 / k            # i8 + one f32 scale per output channel
    name, g = fmt.split(":")[0], int(fmt.split(":")[1])
    sbits = 32 if fmt.endswith(":f32") else 16
    base = {"s4-per-group": 4, "u4-per-group": 4, "s8-per-group": 8, "nf4": 4}.get(name, 4)
    zbits = 4 if name == "u4-per-group" else 0
    return base + (sbits + zbits) / g


PROBE_C = r"""
#include <stdint.h>
#include <stddef.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
/* Sum of n 64-bit words (n a multiple of 16): the read bandwidth probe. */
uint64_t probe_read(const uint64_t *p, size_t n) {
#ifdef __AVX2__
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i < n; i += 16) {
    a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
    b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
    c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
    d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
  }
  a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  uint64_t o[4];
  _mm256_storeu_si256((__m256i *)o, a);
  return o[0] + o[1] + o[2] + o[3];
#else
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += p[i];
  return s;
#endif
}
"""


def run(cmd):
    return benchpy.run(cmd, timeout=1800)


def time_runs(fn, runs):
    """Medians of (thread CPU s, wall s) per call of fn over `runs` calls."""
    cpu, wall = [], []
    fn()
    for _ in range(runs):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        fn()
        c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0) / 1e9)
        wall.append((w1 - w0) / 1e9)
    return float(np.median(cpu)), float(np.median(wall))


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    rt = load_rt(Q8C)
    d = tempfile.mkdtemp(prefix="q8-wformat-")
    with open(os.path.join(d, "probe.c"), "w") as f:
        f.write(PROBE_C)
    probe_so = os.path.join(d, "probe.so")
    run(["cc", "-O2", "-march=native", "-shared", "-fPIC", "-o", probe_so,
         os.path.join(d, "probe.c")])
    probe = ctypes.CDLL(probe_so)
    probe.probe_read.restype = ctypes.c_uint64
    probe.probe_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def read_bw(nbytes, runs):
        words = max(16, (int(nbytes) // 8 + 15) // 16 * 16)
        raw = np.ones(words + 8, np.uint64)
        off = (-raw.ctypes.data % 32) // 8
        buf = raw[off:off + words]
        c, w = time_runs(lambda: probe.probe_read(buf.ctypes.data, words), runs)
        return words * 8 / c / 1e9

    rng = np.random.default_rng(7)
    rows = []
    for (m, k, n) in SHAPES:
        w = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
        b = (rng.standard_normal(n) * 0.01).astype(np.float32)
        write_safetensors(os.path.join(d, "w.safetensors"), {"w": w, "b": b})
        del w
        ir = os.path.join(d, "m.ir")
        with open(ir, "w") as f:
            f.write('model lin {\n  weights "w.safetensors"\n  input %%x : f32[?, %d]\n'
                    '  %%y = linear %%x, @w, @b\n  output %%y\n}\n' % k)
        x = rng.standard_normal((m, k)).astype(np.float32)
        res = {}
        for fmt in FORMATS:
            so = os.path.join(d, "m-%s.so" % fmt.replace(":", "_"))
            opts = ["--dynamic", "--weights=s8-per-channel"] if fmt == "int8" else \
                   ["--weights=" + fmt]
            t0 = time.time()
            run([Q8C, ir, "-o", so, "--target=native", "--batch", str(m)] + opts)
            wbytes = bits_per_weight(fmt, k) * k * n / 8
            copies = max(1, int(3 * LLC // wbytes) + 1)
            paths = [so]
            for i in range(1, copies):
                p = so + ".%d.so" % i
                shutil.copyfile(so, p)
                paths.append(p)
            models = [Model(rt, p, x, n, threads=1) for p in paths]
            res[fmt] = {"bytes": wbytes, "copies": copies, "hot": [], "dram": [],
                        "bw_hot": [], "bw_dram": [], "compile": time.time() - t0,
                        "models": models}
        for _ in range(ROUNDS):
            for fmt in FORMATS:
                r = res[fmt]
                ms = r["models"]
                r["hot"].append(time_runs(ms[0].run, RUNS))
                r["bw_hot"].append(read_bw(r["bytes"], RUNS))

                def one_round():
                    for mm in ms:
                        mm.run()
                cpu, wall = time_runs(one_round, max(2, RUNS // 3))
                r["dram"].append((cpu / len(ms), wall / len(ms)))
                r["bw_dram"].append(read_bw(r["bytes"] * len(ms), max(2, RUNS // 3)))
        for fmt in FORMATS:
            r = res[fmt]
            out = {"shape": "%dx%dx%d" % (m, k, n), "fmt": fmt, "bytes": r["bytes"],
                   "copies": r["copies"]}
            for place in ("hot", "dram"):
                cpu = float(np.median([c for c, _ in r[place]]))
                wall = float(np.median([wl for _, wl in r[place]]))
                bw = float(np.median(r["bw_" + place]))
                out[place] = (cpu, wall, r["bytes"] / cpu / 1e9, bw)
            rows.append(out)
            print("%-14s %-20s %7.2f MB  hot %7.3f ms (wall %7.3f) %6.1f GB/s of %5.1f | "
                  "dram x%-3d %7.3f ms (wall %7.3f) %6.1f GB/s of %5.1f" % (
                      out["shape"], fmt, r["bytes"] / 1e6, out["hot"][0] * 1e3,
                      out["hot"][1] * 1e3, out["hot"][2], out["hot"][3], r["copies"],
                      out["dram"][0] * 1e3, out["dram"][1] * 1e3, out["dram"][2],
                      out["dram"][3]), flush=True)
            for mm in r["models"]:
                rt.q8rt_free(mm.m)
            r["models"] = None
        for f in os.listdir(d):
            if f.endswith(".so") and f != "probe.so":
                os.unlink(os.path.join(d, f))

    print("\n| M x K x N | format | weight MB | hot ms | hot GB/s (% of read bw) | "
          "DRAM ms | DRAM GB/s (% of read bw) | speed-up vs int8 (hot / DRAM) |")
    print("|---|---|---|---|---|---|---|---|")
    base = {r["shape"]: r for r in rows if r["fmt"] == "int8"}
    for r in rows:
        b = base.get(r["shape"])
        su = "%.2fx / %.2fx" % (b["hot"][0] / r["hot"][0], b["dram"][0] / r["dram"][0]) \
            if b else "-"
        print("| %s | %s | %.2f | %.3f | %.1f (%.0f%%) | %.3f | %.1f (%.0f%%) | %s |" % (
            r["shape"], r["fmt"], r["bytes"] / 1e6, r["hot"][0] * 1e3, r["hot"][2],
            100 * r["hot"][2] / r["hot"][3], r["dram"][0] * 1e3, r["dram"][2],
            100 * r["dram"][2] / r["dram"][3], su))
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
