#!/usr/bin/python3
"""The float linear and matmul: the vector GEMM of codegen/f32gemm.c against
the scalar reference call (ir/refops.c's q8_ref_linear / q8_ref_matmul,
what generated code called before; Q8_SCALAR_FLOATOPS=1 brings it back),
in G FLOP/s (2 M N K per run) on this machine's best variant, one thread,
and against the machine's peak for separate multiplies and adds.

The peak is measured, not taken from a data sheet: a C loop (compiled here
with -O2 -mavx2 -ffp-contract=off) of 6 independent add chains on ymm (an add's latency times the add pipes)
registers, each adding a fresh vmulps product (as the GEMM's inner loop
does), timed by the thread's CPU time. On AMD Zen multiplies and adds issue on separate
pipes (two each), so this is also the FMA peak; on Intel cores both share
two ports and it is half.

Each model is one layer kept float (--keep-float), loaded through libq8rt
(ctypes) without threads and timed by the calling thread's CPU time
(CLOCK_THREAD_CPUTIME_ID), medians of ROUNDS x RUNS.

  /usr/bin/python3 bench/f32gemm.py [path/to/q8c] [--rounds N] [--runs N]
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402
from benchpy import Model, load_rt  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
ROUNDS = int(OPTS.get("--rounds", 3))
RUNS = int(OPTS.get("--runs", 5))

# (label, inputs {name: shape}, body, weights {name: shape}, flops)
CASES = [
    ("linear [128,768] x [768,768]^T + b", {"x": [128, 768]},
     "%y = linear %x, @w, @b", {"w": [768, 768], "b": [768]}, 2 * 128 * 768 * 768),
    ("linear [128,768] x [3072,768]^T + b", {"x": [128, 768]},
     "%y = linear %x, @w, @b", {"w": [3072, 768], "b": [3072]}, 2 * 128 * 768 * 3072),
    ("linear [64,4096] x [4096,4096]^T", {"x": [64, 4096]},
     "%y = linear %x, @w", {"w": [4096, 4096]}, 2 * 64 * 4096 * 4096),
    ("linear [1,4096] x [4096,4096]^T", {"x": [1, 4096]},
     "%y = linear %x, @w", {"w": [4096, 4096]}, 2 * 4096 * 4096),
    ("matmul [12,128,64] x [12,64,128]", {"x": [12, 128, 64], "z": [12, 64, 128]},
     "%y = matmul %x, %z", {}, 2 * 12 * 128 * 64 * 128),
    ("matmul [12,128,128] x [12,128,64]", {"x": [12, 128, 128], "z": [12, 128, 64]},
     "%y = matmul %x, %z", {}, 2 * 12 * 128 * 128 * 64),
]

PEAK_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#define STEP(a, x) a = _mm256_add_ps(a, _mm256_mul_ps(x, m))
int main(void) {
  __m256 m = _mm256_set1_ps(1.0000001f), x0 = _mm256_set1_ps(1e-7f), x1 = x0, x2 = x0,
         x3 = x0, x4 = x0, x5 = x0;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  long iters = 100000000;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (long it = 0; it < iters; it++) {
    /* Fresh operands each time: no product is hoisted out of the loop. */
    __asm__("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
    STEP(a0, x0); STEP(a1, x1); STEP(a2, x2); STEP(a3, x3); STEP(a4, x4); STEP(a5, x5);
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(a4, a5));
  double sec = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  printf("%f %f\n", iters * 6.0 * 16 / sec / 1e9, s[0]);
  return 0;
}
"""


def run(cmd, env=None):
    return benchpy.run(cmd, env, timeout=900)


def peak(d):
    src, exe = os.path.join(d, "peak.c"), os.path.join(d, "peak")
    with open(src, "w") as f:
        f.write(PEAK_C)
    run(["cc", "-O2", "-mavx2", "-ffp-contract=off", src, "-o", exe])
    return max(float(run([exe]).split()[0]) for _ in range(3))


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    rt = load_rt(Q8C)
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8-f32gemm-")
    pk = peak(d)
    print("peak (6 chains of vaddps of vmulps products, ymm, one thread): %.1f G FLOP/s" % pk)
    rows = []
    for label, ins, body, weights, flops in CASES:
        tensors = {k: rng.uniform(-1, 1, s).astype(np.float32) for k, s in weights.items()}
        decl = "".join("  input %%%s : f32%s\n" % (k, str(s).replace(" ", "").replace(
            ",", ", ")) for k, s in ins.items())
        text = "model b {\n%s%s  %s\n  output %%y\n}\n" % (
            '  weights "w.safetensors"\n' if tensors else "", decl, body)
        ir = os.path.join(d, "m.ir")
        with open(ir, "w") as f:
            f.write(text)
        if tensors:
            write_safetensors(os.path.join(d, "w.safetensors"), tensors)
        xs = [rng.standard_normal(s).astype(np.float32) for s in ins.values()]
        shapes = list(ins.values())
        if "w" in weights:
            y_shape = shapes[0][:-1] + [weights["w"][0]]
        else:
            y_shape = shapes[0][:-1] + [shapes[1][-1]]
        med = {}
        for how, env in (("reference", {"Q8_SCALAR_FLOATOPS": "1"}), ("vector", {})):
            so = os.path.join(d, "%s-%d.so" % (how, len(rows)))
            run([Q8C, ir, "-o", so, "--target=native", "--keep-float=y"], env)
            m = Model(rt, so, xs, y_shape)
            runs = RUNS if how == "vector" else max(1, RUNS // 3)
            med[how] = float(np.median([m.time(runs, warmup=1)[0] for _ in range(ROUNDS)]))
        g = {h: flops / (ms * 1e-3) / 1e9 for h, ms in med.items()}
        rows.append((label, med, g))
        print("%-40s reference %.2f ms (%.2f G FLOP/s)  vector %.3f ms (%.1f G FLOP/s, %.0f%% "
              "of peak)  %.0fx" % (label, med["reference"], g["reference"], med["vector"],
                                   g["vector"], 100 * g["vector"] / pk,
                                   med["reference"] / med["vector"]), flush=True)
    print("\n| layer | reference call (G FLOP/s) | vector GEMM (G FLOP/s) | of peak | speed-up |")
    print("|---|---|---|---|---|")
    for label, med, g in rows:
        print("| %s | %.2f | %.1f | %.0f%% | %.0fx |" % (
            label, g["reference"], g["vector"], 100 * g["vector"] / pk,
            med["reference"] / med["vector"]))
    print("\npeak: %.1f G FLOP/s" % pk)


if __name__ == "__main__":
    main()
