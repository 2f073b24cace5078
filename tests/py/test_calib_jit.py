"""Calibration through compiled code (api/jiteval.c, the calibrate pass's
evaluator) gives what the interpreter gives: the same ranges, so the same
int8 model.

Each model is compiled twice, once with Q8_CALIB_INTERP=1 (the interpreter
runs the float model, as before) and once with Q8_CALIB_JIT=1 (compiled
code, forced even where the work is too small to pay for compiling), and
both the IR after the calibrate pass (every range) and the compiled .so
must be byte-identical; --time-passes must show the path taken (its
"calibrate: compile" row only with compiled code):

- examples/mlp, calibration methods minmax, ma-minmax, percentile:99.9,
  entropy and mse (one pass over the data, two, moving averages), auto
  (passes/autocalib.c: its fit and held-back runs through the evaluator
  too, the measurements on the held-back samples the same), and
  --calib-batch 48 over its 256 samples (a last, shorter batch): its rows
  are independent, so compiled code runs five batches at once (240 rows),
  then the last 16 rows padded to 240, while the observers see batches of
  48 and 16;
- the same with Q8_CALIB_ROWS setting the samples a compiled run takes: 40
  with --calib-batch 16 (two batches a run, no padding) and 100 with
  --calib-batch 48 (two a run; the last run 64 rows padded to 96), under
  ma-minmax, whose moving averages see every batch boundary, and
  percentile (two passes over the data);
- a model whose rows are not independent (softmax over the batch axis):
  compiled code must run each --calib-batch batch alone, the last, shorter
  one through a second compiled copy;
- the tiny GPT-2 and BERT of examples/transformers (gen.py writes them and
  their calibration samples): linear, batched matmul, softmax, layernorm,
  gelu, gather over token ids, several inputs.

Usage: test_calib_jit.py /path/to/q8c
"""
import json
import os
import re
import subprocess
import sys

import numpy as np

import q8test

Q8C = None
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MLP = os.path.join(ROOT, "examples", "mlp")
GEN = os.path.join(ROOT, "examples", "transformers", "gen.py")


def q8c(*args, env=None):
    e = dict(os.environ)
    e.pop("Q8_CALIB_INTERP", None)
    e.pop("Q8_CALIB_JIT", None)
    e.update(env or {})
    return subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=1800)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def both_ways(t, label, d, ir, calib, *extra, rows=None):
    """Compile ir with calibration through the interpreter and through the
    JIT (Q8_CALIB_ROWS=rows when given): the calibrated IR and the .so must
    be the same bytes."""
    got = {}
    jit_env = {"Q8_CALIB_JIT": "1"}
    if rows:
        jit_env["Q8_CALIB_ROWS"] = str(rows)
    for how, env in (("interp", {"Q8_CALIB_INTERP": "1"}), ("jit", jit_env)):
        # The same file names in two directories: the IR names its weights
        # file, which sits beside it.
        sub = os.path.join(d, label.replace(" ", "_").replace(":", "_"), how)
        os.makedirs(sub)
        cal, so = os.path.join(sub, "cal.ir"), os.path.join(sub, "model.so")
        r1 = q8c(ir, "--calib", calib, *extra, "--stop-after=calibrate", "-o", cal,
                 "--time-passes", env=env)
        r2 = q8c(ir, "--calib", calib, *extra, "-o", so, env=env)
        if not t.check("%s: calibrates and compiles (%s)" % (label, how),
                       r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr):
            return
        # The path taken, from --time-passes: the evaluator's compile row.
        compiled = re.search(r"%\s+calibrate: compile$", r1.stderr, re.M) is not None
        t.check("%s: %s" % (label, "calibration ran compiled code" if how == "jit" else
                            "calibration ran the interpreter"),
                compiled == (how == "jit"), r1.stderr)
        got[how] = (read(cal), read(so))
    t.check("%s: the calibrated IR is identical" % label, got["interp"][0] == got["jit"][0])
    t.check("%s: the .so is byte-identical" % label, got["interp"][1] == got["jit"][1])
    t.check("%s: the IR has ranges" % label, b"range = [" in got["jit"][0])


def main():
    global Q8C
    Q8C = os.path.abspath(sys.argv[1])
    t = q8test.Tally()
    d = q8test.tmpdir()
    ir, calib = os.path.join(MLP, "mlp.ir"), os.path.join(MLP, "calib.npy")
    for method in ("minmax", "ma-minmax", "percentile:99.9", "entropy", "mse", "auto"):
        both_ways(t, "mlp %s" % method, d, ir, calib, "--calib-method=" + method)
    both_ways(t, "mlp calib-batch 48", d, ir, calib, "--calib-batch=48")
    for method in ("ma-minmax", "percentile:99.9"):
        both_ways(t, "mlp %s rows 40 batch 16" % method, d, ir, calib,
                  "--calib-method=" + method, "--calib-batch=16", rows=40)
        both_ways(t, "mlp %s rows 100 batch 48" % method, d, ir, calib,
                  "--calib-method=" + method, "--calib-batch=48", rows=100)
    # Softmax over the batch axis: each row depends on every row of its
    # batch, so gathering or padding batches would change the ranges.
    s = q8test.tmpdir()
    rng = np.random.default_rng(3)
    q8test.write_safetensors(os.path.join(s, "mix.safetensors"), {
        "w0": rng.standard_normal((16, 8)).astype(np.float32),
        "w1": rng.standard_normal((4, 16)).astype(np.float32)})
    with open(os.path.join(s, "mix.ir"), "w") as f:
        f.write("model mix {\n  weights \"mix.safetensors\"\n  input %x : f32[?, 8]\n"
                "  %h = linear %x, @w0\n  %p = softmax %h {axis = 0}\n"
                "  %y = linear %p, @w1\n  output %y\n}\n")
    np.save(os.path.join(s, "calib.npy"), rng.standard_normal((100, 8)).astype(np.float32))
    for method in ("minmax", "ma-minmax"):
        both_ways(t, "softmax over the batch %s" % method, d, os.path.join(s, "mix.ir"),
                  os.path.join(s, "calib.npy"), "--calib-method=" + method, "--calib-batch=16")
    for arch in ("gpt2", "bert"):
        g = q8test.tmpdir()
        r = subprocess.run([sys.executable, GEN, arch, "tiny", g], capture_output=True,
                           text=True, timeout=1800)
        if not t.check("%s: gen.py writes the model" % arch, r.returncode == 0, r.stderr):
            continue
        with open(os.path.join(g, "manifest.json")) as f:
            m = json.load(f)["models"]["full"]
        both_ways(t, "tiny %s" % arch, d, os.path.join(g, m["ir"]), os.path.join(g, m["calib"]))
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
