#!/usr/bin/env python3
"""readme_sample.py: the README's sample of quantized IR, made by q8c itself.

The README shows what the bundled MLP looks like after quantization. This
script runs `q8c examples/mlp/mlp.ir --calib examples/mlp/calib.npy` and puts
the model's input, layers and output lines between the README's markers

    <!-- readme-sample:begin --> ... <!-- readme-sample:end -->

so the sample cannot go stale: with --check (the test suite runs it) it
changes nothing and fails when the README differs from what q8c prints now.

    readme_sample.py [--check] [--q8c PATH]     (default PATH: build/q8c)
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- readme-sample:begin -->", "<!-- readme-sample:end -->"


def sample(q8c):
    out = subprocess.run(
        [q8c, os.path.join(ROOT, "examples/mlp/mlp.ir"), "--calib",
         os.path.join(ROOT, "examples/mlp/calib.npy")],
        check=True, capture_output=True, text=True).stdout
    # The statements only: the model line, weights line and braces are the
    # same as in the float model shown just above in the README.
    lines = [l.strip() for l in out.splitlines()
             if re.match(r"\s*(input|output|%)", l)]
    return "```\n" + "\n".join(lines) + "\n```\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--q8c", default=os.path.join(ROOT, "build/q8c"))
    args = ap.parse_args()
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    if not m:
        sys.exit("README.md: no %s ... %s block" % (BEGIN, END))
    want = sample(args.q8c)
    if args.check:
        ok = m.group(1) == want
        if not ok:
            sys.stderr.write("README.md's sample is stale; q8c prints:\n" + want +
                             "run scripts/readme_sample.py to update it\n")
        print("%d passed, %d failed" % (int(ok), int(not ok)))
        sys.exit(0 if ok else 1)
    open(path, "w").write(text[:m.start(1)] + want + text[m.end(1):])


if __name__ == "__main__":
    main()
