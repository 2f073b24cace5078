#!/usr/bin/python3
"""A run-time batch against fixed shapes: the same int8 model compiled once
without --batch (one library for every batch) and once per batch with
--batch M, timed at M = 1, 16, 128 on this machine's best variant.

The model is a transformer-MLP-like block, f32[?, 512] -> linear 1536 ->
layernorm -> gelu -> linear 512 -> add bias -> linear 10 -> softmax,
quantized statically (qgemm) or with --dynamic (qlinear_dyn). Both
libraries give the same bits (tests/py/test_rtshape.py); this measures only
speed. Each library is timed in this process through libq8rt (ctypes):
fixed-shape ones with q8rt_run, the run-time one with q8rt_run_dims, by the
CPU time of the calling thread (one thread) of each run. The two alternate
run by run (fixed, run-time, fixed, ...; ROUNDS x RUNS runs of each after a
warm-up), so a change in the machine's load, which other processes sharing
its cores and caches make large, falls on both alike; it prints the medians
and the ratio run-time / fixed.

  /usr/bin/python3 bench/rtshape.py [path/to/q8c] [--rounds N] [--runs N] [--batches 1,16,128]
"""
import ctypes
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402
from benchpy import load_rt  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
ROUNDS = int(OPTS.get("--rounds", 5))
RUNS = int(OPTS.get("--runs", 60))
BATCHES = [int(b) for b in OPTS.get("--batches", "1,16,128").split(",")]

MODEL = """model blk {
  weights "w.safetensors"
  input %x : f32[?, 512]
  %h = linear %x, @fc1.weight, @fc1.bias
  %n = layernorm %h, @ln.weight, @ln.bias
  %g = gelu %n
  %o = linear %g, @fc2.weight, @fc2.bias
  %r = add %o, @shift
  %y = linear %r, @fc3.weight, @fc3.bias
  %p = softmax %y {axis = -1}
  output %p
}
"""


def run(cmd):
    return benchpy.run(cmd, timeout=1200)


class Model(benchpy.Model):
    """benchpy.Model on a random [batch, 512] input; a run-time-shape
    library (runtime) runs through q8rt_run_dims."""

    def __init__(self, rt, path, batch, runtime):
        x = np.random.default_rng(batch).standard_normal((batch, 512)).astype(np.float32)
        super().__init__(rt, path, x, 10)
        self.runtime = runtime
        self.dims = (ctypes.c_int64 * 2)(batch, 512)
        self.dimp = (ctypes.c_void_p * 1)(ctypes.addressof(self.dims))

    def run(self):
        if not self.runtime:
            return super().run()
        if self.rt.q8rt_run_dims(self.m, 1, self.ins, self.dimp, 1, self.outs, self.err,
                                 512) != 0:
            sys.exit("run: " + self.err.value.decode())

    def once(self):
        """The thread CPU ms of one run."""
        c0 = time.thread_time_ns()
        self.run()
        return (time.thread_time_ns() - c0) / 1e6


def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    rt = load_rt(Q8C)
    rng = np.random.default_rng(1)
    d = tempfile.mkdtemp(prefix="q8-rtshape-")
    f32 = np.float32
    write_safetensors(os.path.join(d, "w.safetensors"), {
        "fc1.weight": (rng.standard_normal((1536, 512)) * 0.05).astype(f32),
        "fc1.bias": (rng.standard_normal(1536) * 0.1).astype(f32),
        "ln.weight": np.ones(1536, f32), "ln.bias": np.zeros(1536, f32),
        "fc2.weight": (rng.standard_normal((512, 1536)) * 0.03).astype(f32),
        "fc2.bias": (rng.standard_normal(512) * 0.1).astype(f32),
        "shift": (rng.standard_normal(512) * 0.1).astype(f32),
        "fc3.weight": (rng.standard_normal((10, 512)) * 0.05).astype(f32),
        "fc3.bias": np.zeros(10, f32)})
    ir = os.path.join(d, "m.ir")
    with open(ir, "w") as f:
        f.write(MODEL)
    np.save(os.path.join(d, "calib.npy"), rng.standard_normal((64, 512)).astype(f32))
    print("| scheme | M | fixed --batch M (ms) | run-time batch (ms) | run-time / fixed |")
    print("|---|---|---|---|---|")
    schemes = (("static", ["--calib", os.path.join(d, "calib.npy")]), ("dynamic", ["--dynamic"]))
    for scheme, qargs in [s for s in schemes if s[0] in OPTS.get("--schemes", "static,dynamic")]:
        q = os.path.join(d, scheme + ".ir")
        run([Q8C, ir, *qargs, "-o", q])
        rso = os.path.join(d, scheme + "-rt.so")
        run([Q8C, q, "--target=native", "-o", rso])
        for m in BATCHES:
            fso = os.path.join(d, "%s-%d.so" % (scheme, m))
            run([Q8C, q, "--target=native", "--batch", str(m), "-o", fso])
            models = {"fixed": Model(rt, fso, m, False), "runtime": Model(rt, rso, m, True)}
            times = {k: [] for k in models}
            for i in range(5 + ROUNDS * RUNS):
                for k, mod in models.items():
                    t = mod.once()
                    if i >= 5:
                        times[k].append(t)
            fx, rv = float(np.median(times["fixed"])), float(np.median(times["runtime"]))
            print("| %s | %d | %.4f | %.4f | %.3f |" % (scheme, m, fx, rv, rv / fx), flush=True)


if __name__ == "__main__":
    main()
