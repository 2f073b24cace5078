"""Degenerate data through the whole pipeline: calibration samples that are
all zeros, constant, or hold NaN and Inf; weights with all-zero rows. The
compiler must not divide by zero, must say what it did (a note naming the
value), and must still produce a model whose compiled code matches the
integer interpreter bit for bit; NaN inputs quantize to the zero point and
+-Inf saturate.

Usage: test_degenerate.py /path/to/q8c
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8test import Tally, pytorch_linear, run, tmpdir, write_safetensors  # noqa: E402

MODEL = """model deg {
  weights "deg.safetensors"
  input %x : f32[?, 8]
  %h = linear %x, @w1, @b1
  %a = relu %h
  %y = linear %a, @w2, @b2
  output %y
}
"""


def setup(d, rng, zero_rows=False):
    w1, b1 = pytorch_linear(rng, 8, 16)
    w2, b2 = pytorch_linear(rng, 16, 4)
    if zero_rows:
        w1[3] = 0
        w1[7] = 0
    write_safetensors(os.path.join(d, "deg.safetensors"),
                      {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    path = os.path.join(d, "deg.ir")
    with open(path, "w") as f:
        f.write(MODEL)
    return path


def compile_and_compare(t, q8c, d, model, calib, label, x):
    q_ir = os.path.join(d, "q.ir")
    r = run(q8c, model, "--calib", calib, "-o", q_ir, check=False)
    if not t.check("%s: compiles" % label, r.returncode == 0, r.stderr):
        return r
    xp = os.path.join(d, "x.npy")
    np.save(xp, x)
    ref, got = os.path.join(d, "ref.npy"), os.path.join(d, "got.npy")
    run(q8c, "run", q_ir, "-i", xp, "-o", ref)
    so = os.path.join(d, "m.so")
    run(q8c, q_ir, "--batch", len(x), "-o", so)
    run(q8c, "run", so, "-i", xp, "-o", got)
    a, b = np.load(ref), np.load(got)
    t.check("%s: compiled == interpreter, bit for bit" % label, a.tobytes() == b.tobytes())
    t.check("%s: outputs finite" % label, bool(np.all(np.isfinite(b))))
    return r


def main():
    q8c = sys.argv[1]
    t = Tally()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8)).astype(np.float32)

    d = tmpdir()
    model = setup(d, rng)
    calib = os.path.join(d, "zeros.npy")
    np.save(calib, np.zeros((16, 8), np.float32))
    r = compile_and_compare(t, q8c, d, model, calib, "all-zero samples", x)
    t.check("all-zero samples: the note names %x",
            "calibrate: %x: all values equal 0" in r.stderr, r.stderr)
    t.check("all-zero samples: the degenerate range is reported",
            "degenerate range" in r.stderr, r.stderr)

    d = tmpdir()
    model = setup(d, rng)
    calib = os.path.join(d, "const.npy")
    np.save(calib, np.full((16, 8), 0.5, np.float32))
    r = compile_and_compare(t, q8c, d, model, calib, "constant samples", x)
    t.check("constant samples: noted", "all values equal 0.5" in r.stderr, r.stderr)

    d = tmpdir()
    model = setup(d, rng)
    calib = os.path.join(d, "nan.npy")
    c = rng.standard_normal((16, 8)).astype(np.float32)
    c[0, 0], c[3, 5], c[7, 2] = np.nan, np.inf, -np.inf
    np.save(calib, c)
    r = compile_and_compare(t, q8c, d, model, calib, "NaN/Inf samples", x)
    t.check("NaN/Inf samples: noted",
            "1 NaN and 2 Inf values ignored" in r.stderr, r.stderr)
    q_ir = open(os.path.join(d, "q.ir")).read()
    t.check("NaN/Inf samples: ranges stay finite",
            "nan" not in q_ir.lower() and "inf" not in q_ir.lower())

    d = tmpdir()
    model = setup(d, rng, zero_rows=True)
    calib = os.path.join(d, "c.npy")
    np.save(calib, rng.standard_normal((16, 8)).astype(np.float32))
    r = compile_and_compare(t, q8c, d, model, calib, "zero weight rows", x)
    t.check("zero weight rows: noted",
            "@w1 has 2 all-zero output channels" in r.stderr, r.stderr)

    # NaN and Inf inputs at run time: NaN -> zero point, +-Inf saturate, the
    # same bits interpreted and compiled.
    d = tmpdir()
    model = setup(d, rng)
    calib = os.path.join(d, "c.npy")
    np.save(calib, rng.standard_normal((16, 8)).astype(np.float32))
    xs = x.copy()
    xs[0, :3] = [np.nan, np.inf, -np.inf]
    xs[1, :] = np.nan
    compile_and_compare(t, q8c, d, model, calib, "NaN/Inf inputs", xs)
    x_nan = np.full((1, 8), np.nan, np.float32)
    x_zero = np.zeros((1, 8), np.float32)
    q_ir = os.path.join(d, "q.ir")
    outs = []
    for name, v in (("nan", x_nan), ("zero", x_zero)):
        p = os.path.join(d, name + ".npy")
        np.save(p, v)
        o = os.path.join(d, name + "-y.npy")
        run(q8c, "run", q_ir, "-i", p, "-o", o)
        outs.append(np.load(o))
    t.check("a NaN input quantizes to the zero point (as 0.0 does)",
            outs[0].tobytes() == outs[1].tobytes())
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
