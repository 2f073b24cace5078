#!/usr/bin/python3
"""Calibration speed on a ~100M-parameter MLP: the float model run by the
interpreter (Q8_CALIB_INTERP=1, as before api/jiteval.c) against compiled
code (the JIT evaluator: vector f32 GEMM reading the weights in place, up
to 256 samples a run, one thread per core), in one run.

The MLP is 2048 -> 4096 -> 4096 x 5 -> 1024 with relu between (96.5M
parameters with biases), 1,024 calibration samples of 2048 floats; q8c
runs the pipeline up to the calibrate pass both ways (--stop-after, with
--time-passes), and the script prints the pass's wall time, samples/s, q8c's
CPU time (all threads; on a loaded machine wall time is inflated by other
processes) and the speed-ups against issue 16's 20x target, and checks
the two calibrated IRs, every range, are identical (the observers saw the
same values).

  /usr/bin/python3 bench/calib_mlp.py [path/to/q8c] [--samples N] [--hidden H]
"""
import os
import re
import resource
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchpy  # noqa: E402

Q8C, OPTS, args = benchpy.parse_args()
SAMPLES = int(OPTS.get("--samples", 1024))
HIDDEN = int(OPTS.get("--hidden", 4096))
D_IN, D_OUT, DEPTH = 2048, 1024, 5


def write_model(d, rng):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "tests", "py"))
    from q8test import write_safetensors
    dims = [D_IN] + [HIDDEN] * (DEPTH + 1) + [D_OUT]
    tensors, lines, x, params = {}, [], "x", 0
    for i in range(len(dims) - 1):
        n_in, n_out = dims[i], dims[i + 1]
        bound = 1.0 / np.sqrt(n_in)
        tensors["w%d" % i] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        tensors["b%d" % i] = rng.uniform(-bound, bound, n_out).astype(np.float32)
        params += n_out * n_in + n_out
        lines.append("  %%h%d = linear %%%s, @w%d, @b%d" % (i, x, i, i))
        if i < len(dims) - 2:
            lines.append("  %%a%d = relu %%h%d" % (i, i))
            x = "a%d" % i
    text = "model big {\n  weights \"big.safetensors\"\n  input %%x : f32[?, %d]\n%s\n" \
           "  output %%h%d\n}\n" % (D_IN, "\n".join(lines), len(dims) - 2)
    write_safetensors(os.path.join(d, "big.safetensors"), tensors)
    with open(os.path.join(d, "big.ir"), "w") as f:
        f.write(text)
    np.save(os.path.join(d, "calib.npy"), rng.standard_normal((SAMPLES, D_IN)).astype(np.float32))
    return params


def calibrate(d, tag, env):
    """q8c up to the calibrate pass (its output: the IR with the ranges);
    the pass's wall time (--time-passes), q8c's CPU time (all threads)."""
    e = dict(os.environ)
    e.update(env)
    out = os.path.join(d, "big-%s.ir" % tag)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([Q8C, os.path.join(d, "big.ir"), "--calib", os.path.join(d, "calib.npy"),
                        "--stop-after=calibrate", "-o", out, "--time-passes"],
                       capture_output=True, text=True, env=e, timeout=7200)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit("q8c failed:\n" + r.stderr)
    m = re.search(r"^\s*([0-9.]+)\s+[0-9.]+%\s+calibrate$", r.stderr, re.M)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(out) as f:
        # The IR names its weights file (big-TAG.safetensors): not compared.
        text = f.read().replace("big-%s.safetensors" % tag, "WEIGHTS")
    return text, float(m.group(1)) if m else float("nan"), cpu


def main():
    d = tempfile.mkdtemp(prefix="q8-calib-mlp-")
    params = write_model(d, np.random.default_rng(0))
    print("MLP %d -> %d -> %d x %d -> %d: %.1fM parameters, %d samples" % (
        D_IN, HIDDEN, HIDDEN, DEPTH, D_OUT, params / 1e6, SAMPLES), flush=True)
    ir_j, wall_j, cpu_j = calibrate(d, "jit", {})
    print("compiled code: calibrate %.2f s wall (%.0f samples/s), q8c %.2f s CPU" % (
        wall_j, SAMPLES / wall_j, cpu_j), flush=True)
    ir_i, wall_i, cpu_i = calibrate(d, "interp", {"Q8_CALIB_INTERP": "1"})
    print("interpreter:   calibrate %.2f s wall (%.1f samples/s), q8c %.2f s CPU" % (
        wall_i, SAMPLES / wall_i, cpu_i), flush=True)
    same = ir_j == ir_i
    print("speed-up: %.1fx wall, %.1fx CPU; the calibrated IR (every range) is %s" % (
        wall_i / wall_j, cpu_i / cpu_j, "identical" if same else "DIFFERENT"))
    print("20x target: %s in CPU time, %s in wall time" % (
        "met" if cpu_i / cpu_j >= 20 else "missed", "met" if wall_i / wall_j >= 20 else "missed"))
    return 0 if same else 1

if __name__ == "__main__":
    sys.exit(main())
