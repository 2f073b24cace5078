"""--weights-out: a library whose packed weights are in a file of their own.

The library (three x86 variants, so the file holds one shared copy) runs
with output bytes identical to the self-contained library's and to the
interpreter's, on every variant this machine runs, through `q8c run` and
through a moved pair (the file is found beside the library). The file is
about the int8 weights' size and the library is small. Loading is refused
before any run, with an exact message, when the file is missing, truncated,
not a weights file, or another model's (same shapes, other weights), and
--weights-out without a library output is a usage error.

Usage: test_weights_file.py /path/to/q8c
"""
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8models import linear_params, write_model  # noqa: E402
from q8test import Tally, list_targets, tmpdir  # noqa: E402

Q8C = os.path.abspath(sys.argv[1])
RUNS_HERE = {v.name for v in list_targets(Q8C) if v.arch == "x86_64" and v.runs_here}
FORCE = {"avx2": "avx2,fma,f16c", "generic": "sse41"}
TARGETS = "--target=avx512vnni,avx2,generic"

MODEL = """model wf {
  weights "WEIGHTS"
  input %x : f32[?, 256] {range = [-2, 2]}
  %h = linear %x, @w1, @b1 {range = [-3, 3]}
  %a = relu %h {range = [0, 3]}
  %y = linear %a, @w2, @b2 {range = [-3, 3]}
  output %y
}
"""


def q8c(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([Q8C] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=600)


def ok(r):
    if r.returncode != 0:
        raise RuntimeError("q8c failed (%d):\n%s" % (r.returncode, r.stderr))
    return r


def model_in(d, seed):
    rng = np.random.default_rng(seed)
    w1, b1 = linear_params(rng, 512, 256)
    w2, b2 = linear_params(rng, 256, 512)
    return write_model(d, "wf", MODEL, {"w1": w1, "b1": b1, "w2": w2, "b2": b2})


def main():
    t = Tally()
    d = tmpdir()
    model = model_in(d, 11)
    x = os.path.join(d, "x.npy")
    np.save(x, np.random.default_rng(3).uniform(-2, 2, (1, 256)).astype(np.float32))
    lib, wfile, whole = (os.path.join(d, n) for n in ("wf.so", "wf.weights", "whole.so"))
    ok(q8c(model, TARGETS, "--weights-out", wfile, "-o", lib))
    ok(q8c(model, TARGETS, "-o", whole))
    q_ir, want = os.path.join(d, "q.ir"), os.path.join(d, "y-interp.npy")
    ok(q8c(model, "-o", q_ir))
    ok(q8c("run", q_ir, "-i", x, "-o", want))
    ref = np.load(want).tobytes()
    wbytes = 512 * 256 + 256 * 512
    size = os.path.getsize(wfile)
    t.record("the file holds one copy", 64 + wbytes <= size <= 64 + wbytes + 2 * 64,
             "%d bytes for %d bytes of int8 weights" % (size, wbytes))
    gone = os.path.getsize(whole) - os.path.getsize(lib)
    t.record("the library holds no weights", abs(gone - wbytes) < 4096,
             "%d bytes, %d fewer than self-contained" % (os.path.getsize(lib), gone))
    ran = 0
    for isa, feats in FORCE.items():
        if isa not in RUNS_HERE:
            continue
        env = {"Q8_CPU_FEATURES": feats}
        ya, yb = os.path.join(d, "ya-%s.npy" % isa), os.path.join(d, "yb-%s.npy" % isa)
        ok(q8c("run", lib, "-i", x, "-o", ya, env=env))
        ok(q8c("run", whole, "-i", x, "-o", yb, env=env))
        a, b = np.load(ya).tobytes(), np.load(yb).tobytes()
        t.record("%s: weights file" % isa, a == b == ref,
                 "bytes %s the self-contained library's and %s the interpreter's"
                 % ("equal" if a == b else "differ from", "equal" if a == ref else "differ from"))
        ran += 1
    t.record("variants run", ran > 0, "%d" % ran)

    # The pair moved elsewhere: the file is found beside the library.
    moved = os.path.join(d, "moved")
    os.mkdir(moved)
    shutil.copy(lib, moved)
    shutil.copy(wfile, moved)
    ym = os.path.join(d, "ym.npy")
    r = q8c("run", os.path.join(moved, "wf.so"), "-i", x, "-o", ym)
    t.record("moved with its library", r.returncode == 0 and np.load(ym).tobytes() == ref,
             r.stderr.strip())

    def refused(label, want_msg):
        y = os.path.join(d, "refused.npy")
        if os.path.exists(y):
            os.remove(y)
        r = q8c("run", mlib, "-i", x, "-o", y)
        t.record(label, r.returncode == 1 and r.stderr == want_msg and not os.path.exists(y),
                 "exit %d, %r" % (r.returncode, r.stderr))

    mlib, mw = os.path.join(moved, "wf.so"), os.path.join(moved, "wf.weights")
    os.remove(mw)
    refused("missing file", "%s: error: cannot open the weights file '%s' of '%s': No such file "
            "or directory\n" % (mlib, mw, mlib))
    with open(wfile, "rb") as f:
        data = f.read()
    with open(mw, "wb") as f:
        f.write(data[:-100])
    refused("truncated file", "%s: error: the weights file '%s' is truncated: %d bytes, '%s' "
            "expects %d\n" % (mlib, mw, len(data) - 100, mlib, len(data)))
    with open(mw, "wb") as f:
        f.write(b"not weights\n")
    refused("not a weights file", "%s: error: '%s' is not a q8c weights file\n" % (mlib, mw))
    # Another model with the same shapes: same size, another checksum.
    d2 = tmpdir()
    other = model_in(d2, 12)
    ok(q8c(other, TARGETS, "--weights-out", mw, "-o", os.path.join(d2, "other.so")))
    with open(mw, "rb") as f:
        h = f.read(24)
    osum = int.from_bytes(h[16:24], "little")
    wsum = int.from_bytes(data[16:24], "little")
    n = len(data) - 64
    refused("another model's file",
            "%s: error: the weights file '%s' is not the one '%s' was compiled with: it holds %d "
            "bytes of weights with checksum %016x, the library expects %d bytes with checksum "
            "%016x\n" % (mlib, mw, mlib, n, osum, n, wsum))

    r = q8c(model, "--weights-out", wfile, "-o", os.path.join(d, "wf.s"))
    t.record("usage error without a library", r.returncode == 2 and r.stderr ==
             "q8c: error: --weights-out applies to a shared library written to a file "
             "(-o MODEL.so)\n", r.stderr.strip())
    sys.exit(t.finish())


if __name__ == "__main__":
    main()
