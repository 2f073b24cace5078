"""The q8c command line as a user meets it: the default without calibration
data, GNU option conventions, '-' for standard input and output, error
messages that name their files, `q8c info`, `q8c bench` and -q. Error texts
are asserted exactly.

Usage: test_cli.py /path/to/q8c
"""
import io
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
from q8test import Tally, pytorch_linear, run, tmpdir, write_safetensors  # noqa: E402

HINT = "Try 'q8c --help' for more information.\n"
NOTE = ("q8c: note: no calibration data: activations are quantized at run time (--dynamic); "
        "give --calib FILE for static int8\n")

MODEL = """model net {{
  weights "{weights}"
  input %x : f32[?, 32]{xr}
  %h = linear %x, @w1, @b1{hr}
  %a = relu %h{ar}
  %y = linear %a, @w2, @b2{yr}
  output %y
}}
"""

TWO_INPUTS = """model two {{
  weights "{weights}"
  input %x : f32[?, 32]
  input %z : f32[?, 32]
  %s = add %x, %z
  %y = linear %s, @w1, @b1
  output %y
}}
"""


def q8(q8c, args, cwd=None, input=None, env=None):
    """q8c with bytes in and out (for binary standard input and output)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([q8c] + [str(a) for a in args], cwd=cwd, input=input,
                          capture_output=True, env=e, timeout=300)


def main():
    q8c = os.path.abspath(sys.argv[1])
    t = Tally()
    rng = np.random.default_rng(5)
    d = tmpdir()
    w1, b1 = pytorch_linear(rng, 32, 48)
    w2, b2 = pytorch_linear(rng, 48, 10)
    weights = os.path.join(d, "net.safetensors")
    write_safetensors(weights, {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    model = os.path.join(d, "net.ir")
    with open(model, "w") as f:
        f.write(MODEL.format(weights=weights, xr="", hr="", ar="", yr=""))
    ranged = os.path.join(d, "ranged.ir")
    with open(ranged, "w") as f:
        f.write(MODEL.format(weights=weights, xr=" {range = [-4, 4]}",
                             hr=" {range = [-3, 3]}", ar=" {range = [0, 3]}",
                             yr=" {range = [-2, 2]}"))
    two = os.path.join(d, "two.ir")
    with open(two, "w") as f:
        f.write(TWO_INPUTS.format(weights=weights))
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((64, 32)).astype(np.float32))
    x = os.path.join(d, "x.npy")
    np.save(x, rng.standard_normal((1, 32)).astype(np.float32))
    so = os.path.join(d, "static.so")
    run(q8c, model, "--calib", calib, "-q", "-o", so)

    # ---- 1. a default without data ----
    dyn_so = os.path.join(d, "dyn.so")
    r = run(q8c, model, "-o", dyn_so, check=False)
    t.check("no --calib: compiles, quantizing at run time, with one note",
            r.returncode == 0 and q8test.without_form_note(r.stderr) == NOTE, r.stderr)
    r = run(q8c, "run", dyn_so, "-i", x, check=False)
    t.check("the dynamic library runs", r.returncode == 0 and "%y" in r.stdout, r.stderr)
    r = run(q8c, model, check=False)
    t.check("no --calib: the IR has qlinear_dyn", r.returncode == 0 and "qlinear_dyn" in r.stdout
            and "qgemm" not in r.stdout, r.stdout + r.stderr)
    r = run(q8c, ranged, check=False)
    t.check("every range in the IR: static, no note",
            r.returncode == 0 and r.stderr == "" and "qgemm" in r.stdout
            and "qlinear_dyn" not in r.stdout, r.stdout + r.stderr)
    r = run(q8c, model, "--calib", calib, "--dynamic", check=False)
    t.check("--calib with --dynamic is a usage error",
            r.returncode == 2 and r.stderr ==
            "q8c: error: --calib and --dynamic exclude each other: --dynamic quantizes "
            "activations at run time from no data (--calib is used with it only by --report)\n"
            + HINT, r.stderr)
    r = run(q8c, model, "--calib", model, check=False)
    t.check("--calib of the wrong kind names the file and the kinds",
            r.returncode == 1 and r.stderr ==
            "q8c: error: --calib %s: not calibration samples: expected a .npy array or a "
            ".safetensors file of arrays named after the inputs\n" % model, r.stderr)

    # ---- 7. -q ----
    r = run(q8c, model, "-q", "-o", os.path.join(d, "q.so"), check=False)
    t.check("-q silences the note", r.returncode == 0 and r.stderr == "", r.stderr)
    r = run(q8c, model, "--quiet", "--emit=llvm", check=False)
    t.check("--quiet too", r.returncode == 0 and r.stderr == "", r.stderr)

    # ---- 2. GNU conventions ----
    out = os.path.join(d, "attached.ir")
    r = run(q8c, model, "-q", "-o" + out, check=False)
    t.check("-oFILE", r.returncode == 0 and os.path.exists(out), r.stderr)
    r = run(q8c, "-q", "--stop-after=verify", "--", model, check=False)
    t.check("-- then the model", r.returncode == 0 and "model net" in r.stdout, r.stderr)
    r = run(q8c, "--", "--help", check=False)
    t.check("-- ends the options: --help is a file",
            r.returncode == 1 and r.stderr == "--help: error: cannot open: No such file or "
            "directory\n", r.stderr)
    r = q8(q8c, ["--", "run"], cwd=d)
    t.check("-- ends the options: run is a file", r.returncode == 1 and r.stderr.decode() ==
            "run: error: cannot open: No such file or directory\n", r.stderr.decode())
    r = run(q8c, model, "--calib", calib, "--calib-me", "entropy", "--stop-after=calibrate",
            check=False)
    t.check("a unique prefix: --calib-me is --calib-method", r.returncode == 0, r.stderr)
    r = run(q8c, model, "--calib", calib, "--calib-m", "entropy", check=False)
    t.check("an ambiguous prefix names the candidates",
            r.returncode == 2 and r.stderr == "q8c: error: option '--calib-m' is ambiguous: it "
            "could be --calib-method, --calib-momentum\n" + HINT, r.stderr)
    r = run(q8c, model, "--repot", check=False)
    t.check("did you mean", r.returncode == 2 and r.stderr ==
            "q8c: error: unknown option '--repot'; did you mean '--report'?\n" + HINT, r.stderr)
    r = run(q8c, model, "-x", check=False)
    t.check("an unknown short option", r.returncode == 2 and r.stderr ==
            "q8c: error: unknown option '-x'\n" + HINT, r.stderr)
    r = run(q8c, model, "--jit", check=False)
    t.check("an option of another subcommand", r.returncode == 2 and r.stderr ==
            "q8c: error: --jit is for `q8c run`\n" + HINT, r.stderr)
    r = run(q8c, model, "--dynamic=yes", check=False)
    t.check("a flag given a value", r.returncode == 2 and r.stderr ==
            "q8c: error: option '--dynamic' takes no value\n" + HINT, r.stderr)
    r = run(q8c, model, "-O9", check=False)
    t.check("-O9", r.returncode == 2 and r.stderr ==
            "q8c: error: -O takes 0, 1, 2 or 3, not '9'\n" + HINT, r.stderr)
    help_text = run(q8c, "--help").stdout
    r = run(q8c, "help", check=False)
    t.check("q8c help prints the help", r.returncode == 0 and r.stdout == help_text
            and r.stdout.startswith("usage: q8c"), r.stderr)
    t.check("--help lists bench and info options", all(
        s in help_text for s in ("--warmup N", "--json", "-q, --quiet", "q8c info MODEL.so")))
    r = run(q8c, model, "--print-after=quantiz", check=False)
    t.check("an unknown pass is a usage error with a guess", r.returncode == 2 and r.stderr ==
            "q8c: error: --print-after: unknown pass 'quantiz'; did you mean 'quantize'? (see "
            "--list-passes)\n" + HINT, r.stderr)
    r = run(q8c, model, "--stop-after=optimize", check=False)
    t.check("an unknown pass without a guess", r.returncode == 2 and r.stderr ==
            "q8c: error: --stop-after: unknown pass 'optimize' (see --list-passes)\n" + HINT,
            r.stderr)
    r = run(q8c, "run", two, "-i", "x=" + x, check=False)
    t.check("a missing named input is a usage error", r.returncode == 2 and r.stderr ==
            "q8c: error: no file given for input 'z' (-i z=FILE.npy)\n" + HINT, r.stderr)

    # ---- 3. '-' ----
    text = open(model).read()
    r = run(q8c, "-", "--calib", calib, "--report", input=text, check=False)
    t.check("a model on standard input with --report (read once)",
            r.returncode == 0 and "SQNR" in r.stdout, r.stderr)
    r = q8(q8c, ["-o", "-", "-q", model], cwd=d)
    want = run(q8c, "-q", model).stdout
    t.check("-o - writes the IR to standard output, no file named '-'",
            r.returncode == 0 and r.stdout.decode() == want
            and not os.path.exists(os.path.join(d, "-")), r.stderr.decode())
    r = run(q8c, model, "-q", "--emit=llvm", "-o", "-", check=False)
    t.check("--emit=llvm -o -", r.returncode == 0 and "@q8_model" in r.stdout, r.stderr)
    r = q8(q8c, [model, "-q", "--emit=so", "-o", "-"])
    t.check("--emit=so -o - to a pipe", r.returncode == 0 and r.stdout[:4] == b"\x7fELF",
            r.stderr.decode())
    ref = run(q8c, "run", so, "-i", x).stdout
    r = q8(q8c, ["run", so, "-i", "-", "-o", "-"], input=open(x, "rb").read())
    ok = r.returncode == 0
    if ok:
        y = np.load(io.BytesIO(r.stdout))
        want_y = os.path.join(d, "y.npy")
        run(q8c, "run", so, "-i", x, "-o", want_y)
        ok = y.tobytes() == np.load(want_y).tobytes()
    t.check("q8c run -i - -o -", ok, r.stderr.decode())
    r = q8(q8c, ["run", so, "-i", "-"], input=open(x, "rb").read())
    t.check("q8c run -i - prints as with a file", r.returncode == 0 and r.stdout.decode() == ref,
            r.stderr.decode())
    r = q8(q8c, ["-", "--calib", "-"], input=b"")
    t.check("standard input only once", r.returncode == 2 and r.stderr.decode() ==
            "q8c: error: standard input ('-') can be read only once, but it is given for the "
            "model and for --calib\n" + HINT, r.stderr.decode())
    r = q8(q8c, [model, "-q", "--calib", "-", "--stop-after=calibrate"],
           input=open(calib, "rb").read())
    t.check("--calib -", r.returncode == 0 and b"range" in r.stdout, r.stderr.decode())

    # ---- 4. errors ----
    r = run(q8c, model, "-q", "-o", "/nonexistent-q8c-dir/out.ir", check=False)
    t.check("a write error names its path", r.returncode == 1 and r.stderr ==
            "q8c: error: cannot create /nonexistent-q8c-dir/out.safetensors: No such file or "
            "directory\n", r.stderr)
    junk = os.path.join(d, "junk.a")
    with open(junk, "w") as f:
        f.write("not an archive\n")
    r = q8(q8c, [model, "-q", "-o", os.path.join(d, "bad.so")], env={"Q8_SUPPORT_LIB": junk})
    err = r.stderr.decode()
    t.check("a failed link is one line: command, status, first linker error",
            r.returncode == 1 and err.count("\n") == 1 and re.match(
                r"^%s: error: linking %s with '\S+ -shared' failed \(exit status \d+\): .*junk\.a"
                % (re.escape(model), re.escape(os.path.join(d, "bad.so"))), err), err)
    r = run(q8c, "run", so, "--quantized", "-i", x, check=False)
    t.check("run --quantized with f32 data: no --batch advice", r.returncode == 1 and r.stderr ==
            "q8c: error: input 'x' is f32[1, 32] but the model's quantized entry takes u8[?, 32] "
            "(--quantized takes each input in its quantized form)\n", r.stderr)

    # ---- 5. info, --version ----
    r = run(q8c, "info", so, check=False)
    lines = dict((l.split(":", 1)[0], l.split(":", 1)[1].strip())
                 for l in r.stdout.splitlines() if ":" in l)
    t.check("info: name, variants, scratch",
            r.returncode == 0 and lines.get("model") == "net" and "variant" in lines
            and int(lines.get("scratch_bytes", "-1")) >= 0, r.stdout + r.stderr)
    t.check("info: input and output with their quantized form",
            re.search(r"^input: x f32\[\?, 32\] quantized u8 scale=\S+ zero_point=\d+$",
                      r.stdout, re.M) is not None
            and re.search(r"^output: y f32\[\?, 10\] ", r.stdout, re.M) is not None, r.stdout)
    m = re.search(r"^weight_bytes: (\d+)", r.stdout, re.M)
    n_int8 = w1.size + w2.size
    # In a sanitizer build the instrumented libq8support.a linked into the
    # library brings kilobytes of its own read-only data: only the lower
    # bound holds there.
    sanitized = "-fsanitize" in os.environ.get("Q8_TEST_LDFLAGS", "")
    t.check("info: weight bytes hold the int8 weights, less than f32 would",
            m is not None and n_int8 <= int(m.group(1)) and
            (sanitized or int(m.group(1)) < 4 * n_int8 + 4096), r.stdout)
    abi = re.search(r"#define Q8_MODEL_ABI_VERSION (\d+)", open(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "include", "q8model.h")).read())
    r = run(q8c, "--version")
    t.check("--version names the model ABI and LLVM",
            re.match(r"^q8c \S+ \(model ABI %s, LLVM \d+\.\d+\.\d+\)$" % abi.group(1),
                     r.stdout.strip()) is not None, r.stdout)

    # ---- 6. bench ----
    def check_bench(label, args, batch):
        r = run(q8c, "bench", *args, "--warmup", "2", "--runs", "7", "--json", check=False)
        try:
            j = json.loads(r.stdout)
            lat = j["latency_ms"]
            ok = (j["runs"] == 7 and j["warmup"] == 2 and j["batch"] == batch
                  and lat["p90"] >= lat["median"] >= lat["min"] > 0
                  and lat["mean"] >= lat["min"]
                  and abs(j["samples_per_s"] - batch / lat["median"] * 1e3)
                  <= 1e-3 * j["samples_per_s"])
        except (ValueError, KeyError, TypeError) as e:
            ok = False
            r.stderr += str(e)
        t.check(label, r.returncode == 0 and ok, r.stdout + r.stderr)

    check_bench("bench a .so: JSON, consistent fields", [so, "--threads", "1"], 1)
    check_bench("bench a .so on -i data", [so, "-i", x], 1)
    qir = os.path.join(d, "q.ir")
    run(q8c, model, "--calib", calib, "-o", qir)
    check_bench("bench a .ir at --batch 4 (JIT)", [qir, "--batch", "4"], 4)
    r = run(q8c, "bench", so, "--runs", "3", check=False)
    t.check("bench prints a table", r.returncode == 0 and re.search(
        r"^latency\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", r.stdout, re.M) is not None,
        r.stdout + r.stderr)
    check_bench("bench a run-time-batch .so at --batch 2", [so, "--batch", "2"], 2)
    fixed = os.path.join(d, "fixed.so")
    run(q8c, qir, "--batch", "1", "-o", fixed)
    r = run(q8c, "bench", fixed, "--batch", "2", check=False)
    t.check("bench: --batch on a fixed-shape .so is a usage error", r.returncode == 2 and
            r.stderr == "q8c: error: %s was compiled for fixed shapes: --batch applies to a .ir "
            "model or a library compiled without --batch (recompile the library with --batch N "
            "to change it)\n" % fixed + HINT, r.stderr)
    r = run(q8c, "bench", so, "--runs", "0", check=False)
    t.check("bench --runs 0", r.returncode == 2 and r.stderr ==
            "q8c: error: --runs needs a positive integer, got '0'\n" + HINT, r.stderr)

    sys.exit(t.finish())


if __name__ == "__main__":
    main()
