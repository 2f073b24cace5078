"""Golden-file tests: each NAME.ir sits beside its expected results.

  NAME.out    expected stdout of `q8c NAME.ir [args]` (exit 0)
  NAME.err    expected stderr (exit 1): the exact diagnostic
  NAME.args   extra command-line arguments. One line per variant: a line
              `TAG: ARGS` expects NAME.TAG.out or NAME.TAG.err instead.

Every successful output must also round-trip: written with -o (IR plus its
constants in a safetensors sidecar), read back and printed, it is the same
text (but for the `weights` line, which names the sidecar).

The directory is copied to a scratch place and gen_weights.py writes the
weights and samples there, so cases run with relative paths exactly as
written. Adding a case is adding files. `--update` rewrites expectations.

Usage: run_golden.py Q8C DIR [--update]
"""
import os
import shutil
import subprocess
import sys
import tempfile


def run(q8c, args, cwd):
    return subprocess.run([q8c] + args, cwd=cwd, capture_output=True, text=True, timeout=120)


def variants(work, name):
    """[(tag or None, args)] for NAME."""
    path = os.path.join(work, name + ".args")
    if not os.path.exists(path):
        return [(None, [])]
    out = []
    for line in open(path).read().splitlines():
        if not line.strip():
            continue
        if ":" in line.split()[0]:
            tag, rest = line.split(":", 1)
            out.append((tag.strip(), rest.split()))
        else:
            out.append((None, line.split()))
    return out


def without_weights(text):
    return "".join(l for l in text.splitlines(True) if not l.startswith("  weights \""))


def check(q8c, work, src_dir, name, tag, args, update):
    base = name + ("." + tag if tag else "")
    r = run(q8c, [name + ".ir"] + args, work)
    err_path = os.path.join(src_dir, base + ".err")
    out_path = os.path.join(src_dir, base + ".out")
    if r.returncode < 0 or r.returncode > 2:
        return "crashed or bad exit status %d\n%s" % (r.returncode, r.stderr)
    if update:
        path, text = (out_path, r.stdout) if r.returncode == 0 else (err_path, r.stderr)
        for stale in (out_path, err_path):
            if stale != path and os.path.exists(stale):
                os.remove(stale)
        with open(path, "w") as f:
            f.write(text)
        return None
    if os.path.exists(err_path):
        want = open(err_path).read()
        if r.returncode != 1:
            return "expected exit 1 with an error, got %d\n%s" % (r.returncode, r.stdout)
        if r.stderr != want:
            return "stderr differs:\n--- want\n%s--- got\n%s" % (want, r.stderr)
        return None
    if not os.path.exists(out_path):
        return "no %s.out or %s.err" % (base, base)
    want = open(out_path).read()
    if r.returncode != 0:
        return "expected success, got exit %d\n%s" % (r.returncode, r.stderr)
    if r.stdout != want:
        return "stdout differs:\n--- want\n%s--- got\n%s" % (want, r.stdout)
    # Round trip through a file and its sidecar.
    if "--report" in " ".join(args):
        return None
    rt = os.path.join(work, "roundtrip-%s.ir" % base)
    w = run(q8c, [name + ".ir"] + args + ["-o", rt], work)
    again = run(q8c, [rt, "--stop-after=verify"], work)
    if w.returncode != 0 or again.returncode != 0 or \
            without_weights(again.stdout) != without_weights(r.stdout):
        return "round trip failed:\n%s%s%s" % (w.stderr, again.stderr, again.stdout)
    return None


def main():
    q8c, src_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    update = "--update" in sys.argv[3:]
    with tempfile.TemporaryDirectory(prefix="q8c-golden-") as tmp:
        work = os.path.join(tmp, "golden")
        shutil.copytree(src_dir, work)
        subprocess.run([sys.executable, os.path.join(src_dir, "gen_weights.py"),
                        os.path.join(work, "weights")], check=True)
        names = sorted(f[:-3] for f in os.listdir(src_dir) if f.endswith(".ir"))
        passed = failed = 0
        for name in names:
            for tag, args in variants(work, name):
                problem = check(q8c, work, src_dir, name, tag, args, update)
                label = name + ("." + tag if tag else "")
                print("%s %s" % ("FAIL" if problem else "ok  ", label))
                if problem:
                    failed += 1
                    print("    " + problem.replace("\n", "\n    "))
                else:
                    passed += 1
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
