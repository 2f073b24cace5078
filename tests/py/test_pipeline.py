"""The pass manager as a user drives it: --list-passes, --print-before and
--print-after, --stop-after, and --dump-dir, whose every dump must parse back
and, compiled again, give exactly what the uninterrupted run gives (the same
final IR and bit-identical outputs, interpreted and compiled).

Usage: test_pipeline.py /path/to/q8c
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from q8test import Tally, pytorch_linear, run, tmpdir, write_safetensors  # noqa: E402

MODEL = """model net {
  weights "net.safetensors"
  input %x : f32[?, 32]
  %h = linear %x, @w1, @b1
  %a = relu %h
  %g = gelu %a
  %h2 = linear %g, @w2, @b2
  %a2 = relu %h2
  %y = linear %a2, @w3, @b3
  output %y
}
"""

PASSES = ["verify", "infer-shapes", "autopilot", "smooth", "calibrate", "quantize", "fuse-requant", "fold-constants"]


def without_weights(text):
    return "".join(l for l in text.splitlines(True) if not l.startswith("  weights \""))


def main():
    q8c = sys.argv[1]
    t = Tally()
    rng = np.random.default_rng(11)
    d = tmpdir()
    tensors = {}
    for i, (n_in, n_out) in enumerate([(32, 64), (64, 48), (48, 10)], 1):
        w, b = pytorch_linear(rng, n_in, n_out)
        tensors["w%d" % i], tensors["b%d" % i] = w, b
    write_safetensors(os.path.join(d, "net.safetensors"), tensors)
    model = os.path.join(d, "net.ir")
    with open(model, "w") as f:
        f.write(MODEL)
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((100, 32)).astype(np.float32))
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((3, 32)).astype(np.float32))

    r = run(q8c, "--list-passes")
    listed = [l.split()[0] for l in r.stdout.splitlines()]
    t.check("--list-passes lists the pipeline in order", listed == PASSES, r.stdout)

    # The uninterrupted run.
    final = os.path.join(d, "final.ir")
    run(q8c, model, "--calib", calib, "-o", final)
    final_text = without_weights(open(final).read())
    run(q8c, "run", final, "-i", x, "-o", os.path.join(d, "final-y.npy"))
    want = np.load(os.path.join(d, "final-y.npy"))
    run(q8c, final, "--batch", "3", "--target=generic", "-o", os.path.join(d, "final.so"))
    run(q8c, "run", os.path.join(d, "final.so"), "-i", x, "-o", os.path.join(d, "so-y.npy"))
    t.check("the compiled model matches the interpreter",
            np.load(os.path.join(d, "so-y.npy")).tobytes() == want.tobytes())

    # Every dump resumes to the same result.
    dumps = os.path.join(d, "dumps")
    run(q8c, model, "--calib", calib, "--dump-dir", dumps, "-o", os.path.join(d, "x.ir"))
    names = sorted(os.listdir(dumps))
    want_names = ["%02d-%s.%s" % (i + 1, p, ext) for i, p in enumerate(PASSES)
                  for ext in ("ir", "safetensors")]
    t.check("--dump-dir writes one numbered file (+ sidecar) per pass",
            names == sorted(want_names), " ".join(names))
    for i, p in enumerate(PASSES):
        dump = os.path.join(dumps, "%02d-%s.ir" % (i + 1, p))
        if not os.path.exists(dump):
            continue
        resumed = os.path.join(d, "resumed-%s.ir" % p)
        needs_calib = i + 1 < PASSES.index("calibrate") + 1 + 1
        args = [dump] + (["--calib", calib] if needs_calib else []) + ["-o", resumed]
        r = run(q8c, *args, check=False)
        if not t.check("resume from %s" % p, r.returncode == 0, r.stderr):
            continue
        t.check("resumed from %s: same final IR" % p,
                without_weights(open(resumed).read()) == final_text)
        y = os.path.join(d, "resumed-%s-y.npy" % p)
        run(q8c, "run", resumed, "-i", x, "-o", y)
        t.check("resumed from %s: bit-identical outputs" % p,
                np.load(y).tobytes() == want.tobytes())
        so = os.path.join(d, "resumed-%s.so" % p)
        r = run(q8c, *([dump] + (["--calib", calib] if needs_calib else []) +
                       ["--batch", "3", "--target=generic", "-o", so]), check=False)
        if t.check("compile %s to a .so" % p, r.returncode == 0, r.stderr):
            y2 = os.path.join(d, "resumed-%s-so-y.npy" % p)
            run(q8c, "run", so, "-i", x, "-o", y2)
            t.check("compiled from %s: bit-identical outputs" % p,
                    np.load(y2).tobytes() == want.tobytes())

    # Printing around passes goes to stderr, with a header naming the pass.
    r = run(q8c, model, "--calib", calib, "--print-before=quantize",
            "--print-after=fuse-requant,fold-constants", "-o", os.path.join(d, "p.ir"))
    heads = [l for l in r.stderr.splitlines() if l.startswith("; *** IR")]
    t.check("--print-before/--print-after print where asked",
            heads == ["; *** IR before quantize ***", "; *** IR after fuse-requant ***",
                      "; *** IR after fold-constants ***"], "\n".join(heads))
    r = run(q8c, model, "--calib", calib, "--print-after-all", "-o", os.path.join(d, "p.ir"))
    heads = [l for l in r.stderr.splitlines() if l.startswith("; *** IR after")]
    t.check("--print-after-all prints after every pass", len(heads) == len(PASSES))
    r = run(q8c, model, "--calib", calib, "--stop-after=quantize")
    t.check("--stop-after=quantize stops there",
            "= qlinear" in r.stdout and "qgemm" not in r.stdout and "quantize %x" in r.stdout)
    r = run(q8c, model, "--calib", calib, "--print-after=nosuch", check=False)
    t.check("an unknown pass name is an error",
            r.returncode == 2 or (r.returncode == 1 and "unknown pass 'nosuch'" in r.stderr),
            r.stderr)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
