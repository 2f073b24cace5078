"""One copy of the weights in a library of several x86 variants.

A weight-dominated model (2 MB of int8 weights) compiled for one variant
(avx2) and for avx512vnni,avx2,generic: the three-variant library must be
at most 10% larger than the one-variant one (each variant's kernels read
one shared packed layout, codegen/x86/qgemm.c), where a copy per variant
made it about three times as large. Every variant of it this machine runs
(chosen through Q8_CPU_FEATURES, and `q8c bench --json` must report that
variant) gives output bytes identical to the interpreter and to the
library compiled for that variant alone.

Usage: test_weight_sharing.py /path/to/q8c
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import linear_params, write_model  # noqa: E402
from q8test import Tally, list_targets, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
RUNS_HERE = {v.name for v in list_targets(Q8C) if v.arch == "x86_64" and v.runs_here}
# The Q8_CPU_FEATURES that make the runtime choose each variant here.
FORCE = {"avx2": "avx2,fma,f16c", "generic": "sse41"}

MODEL = """model wide {
  weights "WEIGHTS"
  input %x : f32[?, 1024] {range = [-2, 2]}
  %h = linear %x, @w1, @b1 {range = [-3, 3]}
  %a = relu %h {range = [0, 3]}
  %y = linear %a, @w2, @b2 {range = [-3, 3]}
  output %y
}
"""


def q8c(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True, env=e,
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError("q8c %s failed (%d):\n%s" % (" ".join(map(str, args)), r.returncode,
                                                       r.stderr))
    return r


def main():
    t = Tally()
    rng = np.random.default_rng(7)
    w1, b1 = linear_params(rng, 1024, 1024)
    w2, b2 = linear_params(rng, 1024, 1024)
    d = tmpdir()
    model = write_model(d, "wide", MODEL, {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    x = os.path.join(d, "x.npy")
    np.save(x, rng.uniform(-2, 2, (3, 1024)).astype(np.float32))

    one, three = os.path.join(d, "one.so"), os.path.join(d, "three.so")
    q8c(model, "--target=avx2", "-o", one)
    q8c(model, "--target=avx512vnni,avx2,generic", "-o", three)
    s1, s3 = os.path.getsize(one), os.path.getsize(three)
    t.record("3-variant library <= 1.10 x 1-variant", s3 <= 1.10 * s1,
             "%d vs %d bytes (%.3fx)" % (s3, s1, s3 / s1))

    want, q_ir = os.path.join(d, "y-interp.npy"), os.path.join(d, "q.ir")
    q8c(model, "-o", q_ir)  # the quantized IR, which the interpreter runs
    q8c("run", q_ir, "--batch", 3, "-i", x, "-o", want)
    ran = 0
    shared3 = os.path.join(d, "three-b3.so")  # 3 rows: tiles of several rows
    q8c(model, "--target=avx512vnni,avx2,generic", "--batch", 3, "-o", shared3)
    for isa, feats in FORCE.items():
        if isa not in RUNS_HERE:
            continue
        env = {"Q8_CPU_FEATURES": feats}
        chosen = json.loads(q8c("bench", shared3, "--runs", 1, "--warmup", 0, "--json",
                                env=env).stdout)["variant"]
        alone = os.path.join(d, "%s.so" % isa)
        q8c(model, "--target=" + isa, "--batch", 3, "-o", alone)
        ys, ya = os.path.join(d, "ys-%s.npy" % isa), os.path.join(d, "ya-%s.npy" % isa)
        q8c("run", shared3, "-i", x, "-o", ys, env=env)
        q8c("run", alone, "-i", x, "-o", ya)
        got, alone_y, ref = np.load(ys), np.load(ya), np.load(want)
        t.record("%s in the 3-variant library" % isa,
                 chosen == isa and got.tobytes() == alone_y.tobytes() == ref.tobytes(),
                 "chosen %s; bytes %s the %s-only library's, %s the interpreter's" % (
                     chosen, "equal" if got.tobytes() == alone_y.tobytes() else "differ from",
                     isa, "equal" if got.tobytes() == ref.tobytes() else "differ from"))
        ran += 1
    t.record("variants run", ran > 0, "%d of %s" % (ran, sorted(FORCE)))
    sys.exit(t.finish())


if __name__ == "__main__":
    main()
