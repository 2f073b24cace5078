"""test_report: the accuracy report (`q8c ... --report[=json]`) recomputed.

Usage: python3 tests/py/test_report.py /path/to/q8c

A small MLP (32 -> 48 -> 48 -> 8, relu between, torch.nn.Linear init) is
compiled with `--calib calib.npy --report=json -o q.ir` on 300 Gaussian
samples (not a multiple of the calibration batch, so the last batch is
short). Every figure of the JSON is then recomputed independently of the
report's code:

  * float values F: the float model, with every intermediate value made an
    output, run by `q8c run` on the samples;
  * propagated: q.ir with every quantized op's result made an output, run by
    `q8c run`, dequantized in numpy ((q - zp) * scale in float32);
  * isolated: each quantized op copied alone into a one-node model fed the
    float model's input, quantized in numpy as docs/quantization.md says
    (f32 division, rint half-even, saturation) when the op takes integers;
  * SQNR, max abs error and cosine in float64 (q8test.stats), which must
    match the JSON to 1e-6 relative, for every layer;
  * names, ops, weight shapes, scales and zero points against q.ir's text;
    each layer's bytes against its constants in q.ir's sidecar;
  * the model outputs: q.ir and the float model run whole, SQNR, max error
    and cosine as above, top-1 agreement with numpy's argmax over the last
    axis, row by row;
  * sizes against the byte counts of the weights files (exact), and in the
    text in the unit that fits (B, KiB, MiB, GiB, formatted here);
  * the q8c version (`q8c --version`) and the options given, in the JSON.

The same for --activations=s8-sym with --calib-batch 7, --dynamic,
--stop-after=quantize (qlinear between quantize and dequantize), and a
branching model: two layers sharing one quantized input, a matmul by a
constant, a layernorm between int8 layers, two outputs; and with layers left
in f32, which must still have their rows ("kept in f32", their size, their
propagated error; isolated exact): --keep-float of a linear, of a matmul and
of a weight, and --stop-after=calibrate (nothing quantized yet).

--report=html: one page on stdout with no external resource, whose chart has
a point per layer in each series (in depth order, carrying the JSON's SQNR,
higher for a higher SQNR), a legend, and a table row per layer and per
output: checked in the page as written and in the DOM that headless chromium
renders (--dump-dom), whose screenshot must show both series' colours. The
browser part is skipped, saying so, when chromium is not installed.

Progress and timing: on a pseudo-terminal, calibration draws "calibrate:
N/300 samples, R samples/s, ETA T s" in place and ends it with a newline;
with stderr not a terminal nothing is printed. --time-passes prints a table
naming every pass of --list-passes, the report and codegen with times >= 0
and their total.

Also: the text report (one row per layer, the size line), a model whose
int8 arithmetic is exact (SQNR inf -> null / "inf"), a calibration path that
needs JSON escapes, and a file that does not fit the model (an error, exit 1).
"""
import html.parser
import json
import math
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32
SIZES = [32, 48, 48, 8]
NSAMPLES = 300
QUANTIZED_OPS = ("qgemm", "qlinear", "qlinear_dyn")
QBOUNDS = {"u8": (0, 255), "i8": (-127, 127)}
NP_DTYPES = {"u8": np.uint8, "i8": np.int8}

MODEL = """model mlp {
  weights "mlp.safetensors"
  input %x : f32[?, 32]
  %h1 = linear %x, @fc1.weight, @fc1.bias
  %a1 = relu %h1
  %h2 = linear %a1, @fc2.weight, @fc2.bias
  %a2 = relu %h2
  %y = linear %a2, @fc3.weight, @fc3.bias
  output %y
}
"""
FLOAT_VALUES = ["h1", "a1", "h2", "a2", "y"]

# Two quantized layers share the input (one quantize feeding both), one is a
# matmul by a constant (stored transposed), and a layernorm between two
# layers leaves two int8 ops with f32 results feeding float code.
BRANCHES = """model branches {
  weights "branches.safetensors"
  input %x : f32[?, 24]
  %a = linear %x, @w1, @b1
  %m = matmul %x, @w2
  %n = layernorm %a, @g, @beta
  %c = linear %n, @w3
  output %m, %c
}
"""
BRANCH_VALUES = ["a", "m", "n", "c"]


class Model:
    """A float model in a scratch directory: its .ir, weights, samples, and a
    copy with every value of `values` made an output (probe)."""

    def __init__(self, d, name, text, tensors, values, calib):
        self.name, self.values, self.nsamples = name, values, calib.shape[0]
        self.ir = os.path.join(d, f"{name}.ir")
        self.weights = os.path.join(d, text.split('"')[1])
        self.calib = os.path.join(d, f"{name}_calib.npy")
        self.probe = os.path.join(d, f"{name}_probe.ir")
        q8test.write_safetensors(self.weights, tensors)
        with open(self.ir, "w") as f:
            f.write(text)
        with open(self.probe, "w") as f:
            f.write(with_outputs(text, values))
        np.save(self.calib, calib)


def close(got, want, rel=1e-6):
    """got (from JSON, None for inf/nan) equals want to `rel` relative."""
    if want is None or not math.isfinite(want):
        return got is None
    if got is None:
        return False
    return abs(got - want) <= rel * abs(want) + 1e-300


def quantize(x, scale, zp, dtype):
    qmin, qmax = QBOUNDS[dtype]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = np.asarray(x, F32) / F32(scale)
    r = np.clip(np.rint(v), F32(qmin - zp), F32(qmax - zp))
    r = np.where(np.isnan(v), F32(0), r)
    return (r.astype(np.int64) + zp).astype(NP_DTYPES[dtype])


def dequantize(q, node):
    if node["type"][0] == "f32":
        return np.asarray(q, F32)
    a = node["attrs"]
    return ((np.asarray(q, np.int64) - a["zero_point"]).astype(F32) * F32(a["scale"])).astype(F32)


def strip_q(name):
    return name[:-2] if name.endswith(".q") else name


class Case:
    def __init__(self, q8c, d, name):
        self.q8c, self.d, self.name = q8c, d, name

    def path(self, f):
        return os.path.join(self.d, f)

    def run_outputs(self, ir_path, names, xin):
        """Run `ir_path` on `xin` and return {name: array} for `names`."""
        outs = []
        for n in names:
            outs += ["-o", f"{n}={self.path(f'out_{self.name}_{n}.npy')}"]
        q8test.run(self.q8c, "run", ir_path, "-i", xin, *outs)
        return {n: np.load(self.path(f"out_{self.name}_{n}.npy")) for n in names}


def with_outputs(ir_text, names):
    """The same model text with `names` as its outputs."""
    lines = [l for l in ir_text.splitlines() if not l.strip().startswith("output ")]
    close_at = max(i for i, l in enumerate(lines) if l.strip() == "}")
    lines.insert(close_at, "  output " + ", ".join("%" + n for n in names))
    return "\n".join(lines) + "\n"


def isolated_output(case, qir_text, ir, node, x_float):
    """The op alone on the float model's input, run by q8c as a one-node
    model reading q.ir's constants."""
    line = next(l for l in qir_text.splitlines() if l.strip().startswith(f"%{node['name']} "))
    src = node["operands"][0][1]
    in_dtype = next((n["type"][0] for n in ir["nodes"] if n["name"] == src), "f32")
    a = node["attrs"]
    if in_dtype == "f32":
        xin = np.asarray(x_float, F32)
    else:
        xin = quantize(x_float, a["x_scale"], a["x_zero_point"], a["x_dtype"])
    line = line.replace(f"= {node['op']} %{src},", f"= {node['op']} %xin,", 1)
    k = xin.shape[1]
    text = (f"model iso {{\n  weights \"{ir['weights'][0]}\"\n"
            f"  input %xin : {in_dtype}[?, {k}]\n{line}\n  output %{node['name']}\n}}\n")
    iso_ir = case.path(f"iso_{case.name}_{node['name']}.ir")
    with open(iso_ir, "w") as f:
        f.write(text)
    xpath = case.path(f"iso_{case.name}_{node['name']}.npy")
    np.save(xpath, xin)
    return case.run_outputs(iso_ir, [node["name"]], xpath)[node["name"]]


def check_stats(t, label, got, ref, x):
    sqnr, maxerr, cos = q8test.stats(ref, x)
    ok = (close(got["sqnr_db"], sqnr) and close(got["max_abs_error"], maxerr)
          and close(got["cosine"], cos))
    t.record(label, ok, f"json {got}, numpy sqnr {sqnr!r} max {maxerr!r} cos {cos!r}")


def fmt_size(n):
    """A byte count as the report prints it: B below 1 KiB, else KiB, MiB,
    GiB with one decimal, moving up while the printed value reaches 1024."""
    if -1024 < n < 1024:
        return f"{n} B"
    v = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        v /= 1024
        s = f"{v:.1f} {unit}"
        if abs(float(s.split()[0])) < 1024:
            return s
    return s


def is_layer(node):
    """A layer of the report: a quantized op, or a linear / matmul by a
    constant left in f32."""
    if node["op"] in QUANTIZED_OPS:
        return True
    return (node["op"] in ("linear", "matmul") and node["type"][0] == "f32"
            and node["operands"][1][0] == "@")


def option_args(args):
    """The JSON "options" the report must give for these command-line args."""
    want = {"weights": "s8-per-channel", "activations": "u8-asym", "dynamic": False,
            "calib_method": "minmax", "calib_batch": 16, "keep_float": None, "stop_after": None}
    it = iter(args)
    for a in it:
        key, _, value = a[2:].partition("=")
        if not value and key in ("calib-batch", "calib-method"):
            value = next(it)
        if key == "dynamic":
            want["dynamic"] = True
        elif key == "calib-batch":
            want["calib_batch"] = int(value)
        elif key == "keep-float":
            want["keep_float"] = value.split(",")
        elif key in ("weights", "activations", "stop-after", "calib-method"):
            want[key.replace("-", "_")] = value
    return want


def top1(ref, x):
    """(rows, rows whose argmax over the last axis agree), numpy's argmax."""
    last = ref.shape[-1] if ref.ndim else 1
    r = np.asarray(ref).reshape(-1, last).argmax(axis=1)
    q = np.asarray(x).reshape(-1, last).argmax(axis=1)
    return len(r), int(np.sum(r == q))


def check_model(t, q8c, d, mod, name, args):
    case = Case(q8c, d, name)
    model, calib, qir = mod.ir, mod.calib, case.path(f"q_{name}.ir")
    try:
        proc = q8test.run(q8c, model, "--calib", calib, "--report=json", *args, "-o", qir)
        rep = json.loads(proc.stdout)
        text = q8test.run(q8c, model, "--calib", calib, "--report", *args,
                          "-o", case.path(f"q_{name}_text.ir")).stdout
    except (RuntimeError, ValueError) as e:
        t.record(f"{name}: report runs and is JSON", False, str(e))
        return
    t.record(f"{name}: report runs and is JSON", True)
    with open(qir) as f:
        qir_text = f.read()
    ir = q8test.parse_ir(qir_text)
    qnodes = [n for n in ir["nodes"] if is_layer(n)]
    t.record(f"{name}: samples and calib", rep["samples"] == mod.nsamples and rep["calib"] == calib,
             f"{rep['samples']} from {rep['calib']}")
    version = q8test.run(q8c, "--version").stdout.split()[1]
    want_opts = option_args(args)
    got_opts = {k: rep.get("options", {}).get(k) for k in want_opts}
    t.record(f"{name}: version and options", rep.get("q8c_version") == version
             and got_opts == want_opts, f"json {rep.get('q8c_version')} {rep.get('options')}, "
             f"want {version} {want_opts}")
    names = [strip_q(n["name"]) for n in qnodes]
    t.record(f"{name}: one layer per quantized op or f32 layer, in order",
             [l["name"] for l in rep["layers"]] == names,
             f"json {[l['name'] for l in rep['layers']]}, q.ir {names}")
    if len(rep["layers"]) != len(qnodes):
        return

    # The figures, recomputed.
    fl = case.run_outputs(mod.probe, mod.values, calib)
    fl["x"] = np.load(calib)
    probe_q = case.path(f"probe_q_{name}.ir")
    with open(probe_q, "w") as f:
        f.write(with_outputs(qir_text, [n["name"] for n in qnodes]))
    qout = case.run_outputs(probe_q, [n["name"] for n in qnodes], calib)
    consts = q8test.read_safetensors(qir[:-3] + ".safetensors")
    for layer, node in zip(rep["layers"], qnodes):
        a = node["attrs"]
        label = f"{name}/{layer['name']}"
        quantized = node["op"] in QUANTIZED_OPS
        wq = consts[node["operands"][1][1]]
        wshape = list(wq.shape) if node["op"] != "matmul" else list(wq.shape[::-1])
        nbytes = sum(consts[o[1]].nbytes for o in node["operands"] if o[0] == "@")
        in_node = next((n for n in ir["nodes"] if n["name"] == node["operands"][0][1]), None)
        in_dtype = in_node["type"][0] if in_node else "f32"
        if node["op"] == "qlinear_dyn":
            want_in = {"dtype": "u8", "scale": None, "zero_point": None}
        elif not quantized:
            want_in = {"dtype": "f32", "scale": None, "zero_point": None}
        else:
            want_in = {"dtype": a["x_dtype"], "scale": a["x_scale"], "zero_point": a["x_zero_point"]}
        out_dtype = node["type"][0]
        want_out = ({"dtype": "f32", "scale": None, "zero_point": None} if out_dtype == "f32" else
                    {"dtype": out_dtype, "scale": a["scale"], "zero_point": a["zero_point"]})
        params_ok = (
            layer["op"] == node["op"]
            and layer["quantized"] == quantized
            and layer["kept_float"] == (not quantized and a.get("keep_float", 0) == 1)
            and layer["weight_shape"] == wshape
            and layer["bytes"] == nbytes
            and layer["relu"] == (a.get("relu", 0) == 1)
            and layer["input"]["dtype"] == want_in["dtype"]
            and layer["input"]["zero_point"] == want_in["zero_point"]
            and close(layer["input"]["scale"], want_in["scale"])
            and layer["output"]["dtype"] == want_out["dtype"]
            and layer["output"]["zero_point"] == want_out["zero_point"]
            and close(layer["output"]["scale"], want_out["scale"])
        )
        t.record(f"{label}: op, shape, bytes, relu, input and output parameters", params_ok,
                 f"json {layer['op']} {layer['weight_shape']} {layer['bytes']} B relu "
                 f"{layer['relu']} in {layer['input']} out {layer['output']}; q.ir {node['op']} "
                 f"{wshape} {nbytes} B {a} (input {in_dtype})")
        ref = fl[layer["name"]]
        check_stats(t, f"{label}: propagated", layer["propagated"], ref,
                    dequantize(qout[node["name"]], node))
        x_float = fl[strip_q(node["operands"][0][1])]
        iso = isolated_output(case, qir_text, ir, node, x_float)
        check_stats(t, f"{label}: isolated", layer["isolated"], ref, dequantize(iso, node))
    # A layer that reads the model's input has the same two errors.
    for layer, node in zip(rep["layers"], qnodes):
        if strip_q(node["operands"][0][1]) == "x":
            t.record(f"{name}/{layer['name']}: on the model input, isolated == propagated",
                     layer["isolated"] == layer["propagated"])

    # The model outputs: q.ir run whole against the float model.
    fouts = case.run_outputs(mod.ir, ir["outputs"], calib)
    qouts = case.run_outputs(qir, ir["outputs"], calib)
    t.record(f"{name}: one entry per model output",
             [o["name"] for o in rep.get("outputs", [])] == ir["outputs"],
             f"json {rep.get('outputs')}, q.ir {ir['outputs']}")
    for out in rep.get("outputs", []):
        label = f"{name}/output {out['name']}"
        ref, x = fouts[out["name"]], qouts[out["name"]]
        check_stats(t, f"{label}: SQNR, max error, cosine", out, ref, x)
        rows, agree = top1(ref, x)
        t.record(f"{label}: top-1 agreement", out["top1_rows"] == rows
                 and out["top1_agree"] == agree and close(out["top1_agreement"], agree / rows),
                 f"json {out['top1_agree']}/{out['top1_rows']} = {out['top1_agreement']}, "
                 f"numpy {agree}/{rows}")

    # Sizes: every constant, from the weights files.
    f32_bytes = sum(v.nbytes for v in q8test.read_safetensors(mod.weights).values())
    int8_bytes = sum(v.nbytes for v in consts.values())
    size = rep["size"]
    t.record(f"{name}: size", size["f32_bytes"] == f32_bytes and size["int8_bytes"] == int8_bytes
             and size["saved_bytes"] == f32_bytes - int8_bytes
             and close(size["ratio"], f32_bytes / int8_bytes),
             f"json {size}, files {f32_bytes} and {int8_bytes} bytes")

    # The text report: a header naming the samples, the version and options,
    # a row per layer (f32 ones saying why), the outputs, sizes.
    lines = text.splitlines()
    ops = dict(zip(names, [n["op"] for n in qnodes]))
    rows = [l for l in lines if len(l.split()) > 1 and ops.get(l.split()[0]) == l.split()[1]]
    t.record(f"{name}: text has one row per layer", len(rows) == len(qnodes),
             f"{len(rows)} rows for {len(qnodes)} layers")
    widths = {len(l) for l in rows + [l for l in lines if l.startswith("layer ")]}
    t.record(f"{name}: text rows aligned", len(widths) == 1, f"line lengths {sorted(widths)}")
    for row, layer in zip(rows, rep["layers"]):
        want = [fmt_size(layer["bytes"])]
        if not layer["quantized"]:
            want.append("f32 (kept in f32)" if layer["kept_float"] else "f32 (not quantized)")
        t.record(f"{name}/{layer['name']}: text row has {want}", all(w in row for w in want), row)
    t.record(f"{name}: text header", bool(lines) and lines[0] ==
             f"q8c report: {mod.nsamples} samples from {calib}", lines[0] if lines else "(empty)")
    t.record(f"{name}: text names version and scheme", len(lines) > 1 and
             lines[1].startswith(f"q8c {version}: weights {want_opts['weights']}, activations "),
             lines[1] if len(lines) > 1 else "(none)")
    out_rows = {l.split()[0]: l for l in lines if l.split() and l.split()[0] in ir["outputs"]
                and "rows)" in l}
    for out in rep.get("outputs", []):
        want = f"{100 * out['top1_agree'] / out['top1_rows']:.2f}% ({out['top1_agree']}/" \
               f"{out['top1_rows']} rows)"
        row = out_rows.get(out["name"], "")
        t.record(f"{name}/output {out['name']}: text row", row.endswith(want),
                 f"want '...{want}', got '{row}'")
    saved = f32_bytes - int8_bytes
    want_size = (f"model size: f32 {fmt_size(f32_bytes)}, int8 {fmt_size(int8_bytes)} "
                 f"({f32_bytes / int8_bytes:.2f}x smaller, {fmt_size(saved)} saved)")
    t.record(f"{name}: text size line", lines[-1:] == [want_size],
             f"want '{want_size}', got {lines[-1:]}")


def check_exact(t, q8c, d):
    """One linear layer whose int8 arithmetic is exact: integer weights with
    127 in every row (scale 1), integer inputs with 0 and 255 in every row
    (dynamic scale 1, zero point 0). The error is 0: SQNR is inf (null in
    JSON, "inf" in text), max error 0, cosine 1."""
    rng = np.random.default_rng(7)
    w = rng.integers(-127, 128, size=(6, 20)).astype(F32)
    w[:, 0] = 127
    x = rng.integers(0, 256, size=(40, 20)).astype(F32)
    x[:, 1], x[:, 2] = 0, 255
    q8test.write_safetensors(os.path.join(d, "exact.safetensors"), {"w": w})
    model = os.path.join(d, "exact.ir")
    with open(model, "w") as f:
        f.write('model exact {\n  weights "exact.safetensors"\n  input %x : f32[?, 20]\n'
                "  %y = linear %x, @w\n  output %y\n}\n")
    calib = os.path.join(d, "exact.npy")
    np.save(calib, x)
    try:
        rep = json.loads(q8test.run(q8c, model, "--calib", calib, "--dynamic", "--report=json",
                                    "-o", os.path.join(d, "q_exact.ir")).stdout)
        text = q8test.run(q8c, model, "--calib", calib, "--dynamic", "--report",
                          "-o", os.path.join(d, "q_exact.ir")).stdout
    except (RuntimeError, ValueError) as e:
        t.record("exact: report", False, str(e))
        return
    want = {"sqnr_db": None, "max_abs_error": 0, "cosine": 1}
    layer = rep["layers"][0] if rep["layers"] else {}
    t.record("exact: SQNR null, error 0, cosine 1",
             layer.get("propagated") == want and layer.get("isolated") == want, str(layer))
    row = [l for l in text.splitlines() if l.split()[:2] == ["y", "qlinear_dyn"]]
    t.record("exact: text says inf", len(row) == 1 and row[0].split().count("inf") == 2,
             row[0] if row else text)


def check_escapes(t, q8c, d, mod):
    """A calibration path with a quote, a backslash and non-ASCII letters
    comes back unchanged through JSON."""
    calib = os.path.join(d, 'cal"ib\\\u00e9t\u00e9.npy')
    np.save(calib, np.load(mod.calib)[:20])
    try:
        rep = json.loads(q8test.run(q8c, mod.ir, "--calib", calib,
                                    "--report=json", "-o", os.path.join(d, "q_esc.ir")).stdout)
        t.record("escapes: calib path round-trips", rep["calib"] == calib and rep["samples"] == 20,
                 rep["calib"])
    except (RuntimeError, ValueError) as e:
        t.record("escapes: calib path round-trips", False, str(e))


def check_bad_samples(t, q8c, d, mod):
    """Samples of the wrong width: the report fails with a message (with
    --dynamic no calibration reads them first)."""
    bad = os.path.join(d, "bad.npy")
    np.save(bad, np.zeros((4, 7), F32))
    proc = q8test.run(q8c, mod.ir, "--calib", bad, "--dynamic",
                      "--report=json", "-o", os.path.join(d, "q_bad.ir"), check=False)
    t.record("bad samples: exit 1 with a message",
             proc.returncode == 1 and "bad.npy" in proc.stderr and proc.stdout == "",
             f"exit {proc.returncode}, stderr {proc.stderr.strip()!r}")


def check_sizes(t, q8c, d):
    """The size line's units: a model of 1.25 MiB of f32 weights (a tie that
    rounds to even: 1.2 MiB), and one of a few hundred bytes (B)."""
    rng = np.random.default_rng(5)
    for name, (n, k) in (("big", (640, 512)), ("tiny", (3, 20))):
        w = rng.uniform(-1, 1, size=(n, k)).astype(F32)
        q8test.write_safetensors(os.path.join(d, f"{name}.safetensors"), {"w": w})
        model = os.path.join(d, f"{name}.ir")
        with open(model, "w") as f:
            f.write(f'model {name} {{\n  weights "{name}.safetensors"\n  input %x : f32[?, {k}]\n'
                    "  %y = linear %x, @w\n  output %y\n}\n")
        calib = os.path.join(d, f"{name}_calib.npy")
        np.save(calib, rng.standard_normal((4, k)).astype(F32))
        qir = os.path.join(d, f"q_{name}.ir")
        try:
            text = q8test.run(q8c, model, "--calib", calib, "--report", "-o", qir).stdout
        except RuntimeError as e:
            t.record(f"sizes/{name}: report", False, str(e))
            continue
        f32_bytes = w.nbytes
        int8_bytes = sum(v.nbytes for v in q8test.read_safetensors(qir[:-3] + ".safetensors").values())
        want = (f"model size: f32 {fmt_size(f32_bytes)}, int8 {fmt_size(int8_bytes)} "
                f"({f32_bytes / int8_bytes:.2f}x smaller, {fmt_size(f32_bytes - int8_bytes)} saved)")
        last = text.splitlines()[-1:]
        t.record(f"sizes/{name}: {want}", last == [want], f"got {last}")
    t.record("sizes: units as fit", [fmt_size(b) for b in (0, 1023, 1024, 1048524, 1048576,
                                                           1310720, 5 << 30)] ==
             ["0 B", "1023 B", "1.0 KiB", "1023.9 KiB", "1.0 MiB", "1.2 MiB", "5.0 GiB"])


# ---- the HTML page ----

class Page(html.parser.HTMLParser):
    """What the checks need of a page: every element as (tag, attrs, the
    element's own text), and the ids/classes of its ancestors."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "col"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        el = {"tag": tag, "attrs": a, "text": "", "classes": set(a.get("class", "").split()),
              "within": [(e["tag"], e["attrs"].get("id"), frozenset(e["classes"]))
                         for e in self.stack]}
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for el in self.stack:
            el["text"] += data

    def find(self, tag, *classes, within_id=None):
        return [e for e in self.elements if e["tag"] == tag and set(classes) <= e["classes"]
                and (within_id is None or any(w[1] == within_id for w in e["within"]))]


def check_page(t, label, page, rep):
    """The chart (a point per layer in each series, in depth order, with the
    layer's SQNR; the legend) and the tables (a row per layer and output)."""
    names = [l["name"] for l in rep["layers"]]
    for series in ("propagated", "isolated"):
        pts = [e for e in page.find("circle", "point", series) if "data-layer" in e["attrs"]]
        t.record(f"{label}: one {series} point per layer, by depth",
                 [p["attrs"]["data-layer"] for p in pts] == names,
                 f"{[p['attrs']['data-layer'] for p in pts]} for {names}")
        want = [("inf" if l[series]["sqnr_db"] is None else f"{l[series]['sqnr_db']:.2f}")
                for l in rep["layers"]]
        got = [p["attrs"].get("data-sqnr") for p in pts]
        t.record(f"{label}: {series} points carry the JSON's SQNR", got == want,
                 f"{got} vs {want}")
        t.record(f"{label}: one {series} line", len(page.find("polyline", "line", series)) == 1)
        ys = [float(p["attrs"]["cy"]) for p in pts]
        finite = [(l[series]["sqnr_db"], y) for l, y in zip(rep["layers"], ys)
                  if l[series]["sqnr_db"] is not None]
        t.record(f"{label}: {series} points higher for higher SQNR",
                 all((a[0] - b[0]) * (b[1] - a[1]) >= -1e-9 for a in finite for b in finite),
                 str(finite))
    legend = page.find("g", "legend")
    text = legend[0]["text"] if legend else ""
    t.check(f"{label}: legend names both series",
             len(legend) == 1 and "propagated" in text and "isolated" in text, text)
    rows = page.find("tr", "layer", within_id="layers")
    t.record(f"{label}: a table row per layer",
             [r["attrs"].get("data-name") for r in rows] == names,
             f"{[r['attrs'].get('data-name') for r in rows]}")
    float_rows = [r["attrs"]["data-name"] for r in rows if "float" in r["classes"]]
    t.record(f"{label}: f32 layers marked", float_rows ==
             [l["name"] for l in rep["layers"] if not l["quantized"]], str(float_rows))
    kept = [r for r in rows if r["attrs"]["data-name"] in float_rows]
    t.record(f"{label}: f32 rows say kept in f32", all("kept in f32" in r["text"] for r in kept),
             str([r["text"] for r in kept]))
    outs = page.find("tr", "output", within_id="outputs")
    t.record(f"{label}: a row per output",
             [r["attrs"].get("data-name") for r in outs] == [o["name"] for o in rep["outputs"]],
             str([r["text"] for r in outs]))


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium(exe, d, *args):
    """Run headless chromium with no network and a fresh profile."""
    profile = tempfile.mkdtemp(dir=d, prefix="chromium-")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def png_pixels(path):
    """The RGB pixels of an 8-bit, non-interlaced PNG (RGB or RGBA), as an
    array [h, w, 3], decoded here with zlib (no imaging library needed)."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(raw):
        n, kind = struct.unpack(">I4s", raw[pos:pos + 8])
        body = raw[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    data = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = data[y * (stride + 1)]
        line = np.frombuffer(data, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:
            cur = np.zeros(stride, np.int32)
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[x] = (line[x] + pred) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


def check_html(t, q8c, d, mod):
    """--report=html: one self-contained page on stdout, checked as written
    and as a real browser renders it (headless chromium's DOM and a
    screenshot, where chromium is installed)."""
    args = ["--calib", mod.calib, "--keep-float=h2"]
    try:
        rep = json.loads(q8test.run(q8c, mod.ir, *args, "--report=json",
                                    "-o", os.path.join(d, "q_html.ir")).stdout)
        proc = q8test.run(q8c, mod.ir, *args, "--report=html", "-o", os.path.join(d, "q_html.ir"))
    except (RuntimeError, ValueError) as e:
        t.record("html: report runs", False, str(e))
        return
    text = proc.stdout
    t.record("html: a whole page on stdout, nothing on stderr",
             text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
             and proc.stderr == "", proc.stderr)
    outside = re.findall(r"(?:https?:|\bsrc\s*=|\bhref\s*=|<script|<link|@import|url\()", text, re.I)
    t.record("html: self-contained (no URL, link, script or import)", not outside, str(outside))
    check_page(t, "html as written", Page(text), rep)
    page_path = os.path.join(d, "report.html")
    with open(page_path, "w") as f:
        f.write(text)

    exe = chromium_path()
    if not exe:
        t.skip("html in a browser", "chromium is not installed (apt-get install chromium; "
               "scripts/install-deps.sh installs it)")
        return
    dom = chromium(exe, d, "--dump-dom", f"file://{page_path}")
    if dom.returncode != 0 or "<svg" not in dom.stdout:
        t.record("html: chromium renders the page", False,
                 f"exit {dom.returncode}: {dom.stderr[-2000:]}")
        return
    check_page(t, "html in chromium", Page(dom.stdout), rep)
    png = os.path.join(d, "report.png")
    shot = chromium(exe, d, f"--screenshot={png}", "--window-size=1600,900",
                    "--hide-scrollbars", f"file://{page_path}")
    if shot.returncode != 0 or not os.path.exists(png):
        t.record("html: screenshot", False, f"exit {shot.returncode}: {shot.stderr[-2000:]}")
        return
    px = png_pixels(png).astype(np.int32)
    # The two series' colours (the page's CSS) must be drawn: lines and points.
    for series, rgb in (("propagated", (0xc0, 0x39, 0x2b)), ("isolated", (0x24, 0x71, 0xa3))):
        n = int(np.sum(np.all(np.abs(px - np.array(rgb)) <= 8, axis=2)))
        t.record(f"html: the {series} series is drawn", n >= 50, f"{n} pixels of {rgb}")
    ink = int(np.sum(np.any(px < 200, axis=2)))
    t.record("html: the page has ink", ink > 5000, f"{ink} non-background pixels")


# ---- progress and timing ----

def run_on_tty(cmd, env=None):
    """Run cmd with stderr on a pseudo-terminal; returns (exit, stdout,
    stderr as bytes)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, env=env,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read()
    proc.wait()
    os.close(master)
    return proc.returncode, out, err


def check_progress(t, q8c, d, mod):
    """On a terminal, calibration shows samples done of all, a rate and an
    ETA on a line rewritten in place and ended by a newline; off a terminal
    stderr stays empty."""
    qir = os.path.join(d, "q_progress.ir")
    rc, out, err = run_on_tty([q8c, mod.ir, "--calib", mod.calib, "--calib-batch", "7",
                               "--report=json", "-o", qir])
    text = err.decode("utf-8", "replace")
    n = mod.nsamples
    t.check("progress: runs on a terminal, report on stdout", rc == 0 and
             json.loads(out)["samples"] == n, f"exit {rc}, stderr {text!r}")
    draws = [s for line in text.replace("\r\n", "\n").split("\n") for s in line.split("\r")]
    running = [s for s in draws if re.match(
        rf"calibrate: \d+/{n} samples, [\d.]+ samples/s, ETA \d+ (?:s|min \d+ s)\x1b\[K$", s)]
    t.check("progress: a line with samples, rate and ETA", bool(running), repr(text))
    done = [s for s in text.replace("\r\n", "\n").split("\n") if
            re.search(rf"\rcalibrate: {n}/{n} samples, [\d.]+ samples/s, \d+ s\x1b\[K$", s)]
    t.check("progress: calibration ends on a line of its own", len(done) == 1, repr(text))
    t.check("progress: updated in place", "\r" in text and text.count("\n") <= 8, repr(text))
    t.check("progress: the report shows its samples too",
             re.search(rf"report: {n}/{n} samples", text) is not None, repr(text))
    proc = q8test.run(q8c, mod.ir, "--calib", mod.calib, "--report=json", "-o", qir)
    t.check("progress: nothing when stderr is not a terminal", proc.stderr == "",
             repr(proc.stderr))
    # A stage that takes longer than the threshold (1 s; 0 here, so every
    # one) leaves a line with its time; with -q nothing does.
    so = os.path.join(d, "stages.so")
    for quiet in (False, True):
        env = dict(os.environ, Q8_SLOW_STAGE_SECONDS="0")
        cmd = [q8c, mod.ir, "--calib", mod.calib, "-o", so] + (["-q"] if quiet else [])
        rc, _, err = run_on_tty(cmd, env)
        lines = re.findall(r"q8c: ([a-z-]+): \d+\.\d s", err.decode("utf-8", "replace"))
        if quiet:
            t.check("progress: -q leaves no stage lines", rc == 0 and not lines,
                    repr(err))
        else:
            t.check("progress: slow stages leave a line with their time (quantize, codegen)",
                    rc == 0 and "quantize" in lines and "codegen" in lines, repr(err))


def check_time_passes(t, q8c, d, mod):
    """--time-passes: a table on stderr naming every pass of --list-passes,
    the report and code generation, each with a time >= 0, and their total."""
    passes = [l.split()[0] for l in q8test.run(q8c, "--list-passes").stdout.splitlines()]
    so = os.path.join(d, "timed.so")
    try:
        proc = q8test.run(q8c, mod.ir, "--calib", mod.calib, "--time-passes", "--report=json",
                          "-o", so)
    except RuntimeError as e:
        t.record("time-passes: runs", False, str(e))
        return
    rows = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"^\s+(\d+\.\d+)\s+(\d+\.\d)%\s+(\S+)$", line)
        if m:
            rows[m.group(3)] = (float(m.group(1)), float(m.group(2)))
    want = passes + ["report", "codegen"]
    t.record("time-passes: every pass, the report and codegen, with a time >= 0",
             all(s in rows and rows[s][0] >= 0 for s in want),
             f"want {want}, stderr {proc.stderr!r}")
    total = rows.get("total", (None,))[0]
    t.record("time-passes: the total adds them up", total is not None and
             abs(total - sum(rows[s][0] for s in want if s in rows)) <= 1e-3 * len(want),
             f"{rows}")
    t.record("time-passes: the output is still written and the report still JSON",
             os.path.getsize(so) > 0 and json.loads(proc.stdout)["samples"] == mod.nsamples)
    plain = q8test.run(q8c, mod.ir, "--calib", mod.calib, "-o", so)
    t.record("time-passes: no table without the option",
             q8test.without_form_note(plain.stderr) == "", plain.stderr)
    help_text = q8test.run(q8c, "--help").stdout
    t.record("help names --time-passes and --report=html",
             "--time-passes" in help_text and "text|json|html" in help_text)


QNAMES = """model qn {
  weights "qn.safetensors"
  input %x : f32[?, 16]
  %h.q = linear %x, @w1, @b1
  %h = relu %h.q
  %y.q = linear %h, @w2, @b2
  output %y.q
}
"""


def check_user_q_names(t, q8c, d, rng):
    """Values the user names like the pipeline's integer values (%h.q, %y.q):
    each quantized op is paired with the float value it stands for (an f32
    result keeps its own name; only an integer one carries the .q or .q.N
    the passes add), so the report runs and names its rows after values of
    the float model. It once failed with "the float model has no value %h"."""
    w1, b1 = q8test.pytorch_linear(rng, 16, 24)
    w2, b2 = q8test.pytorch_linear(rng, 24, 8)
    q8test.write_safetensors(os.path.join(d, "qn.safetensors"),
                             {"w1": w1, "b1": b1, "w2": w2, "b2": b2})
    model, calib = os.path.join(d, "qn.ir"), os.path.join(d, "qn_calib.npy")
    with open(model, "w") as f:
        f.write(QNAMES)
    np.save(calib, rng.standard_normal((20, 16)).astype(F32))
    # The fused pipeline: %h.q's qgemm absorbs the relu and stands for %h;
    # --stop-after=quantize: its input to the second layer is %h.q.1
    # (".q" was taken), which stands for %h too.
    for label, args, want in (("fused", [], ["h", "y.q"]),
                              ("stop-after-quantize", ["--stop-after=quantize"], ["h.q", "y.q"]),
                              ("dynamic", ["--dynamic"], ["h.q", "y.q"])):
        r = q8test.run(q8c, model, "--calib", calib, "--report=json", *args,
                       "-o", os.path.join(d, "qn_q.ir"), check=False)
        if not t.check(f"user .q names {label}: report runs", r.returncode == 0, r.stderr):
            continue
        rep = json.loads(r.stdout)
        got = [l["name"] for l in rep["layers"]]
        outs = rep["outputs"]
        t.record(f"user .q names {label}: rows {want}, output y.q above 30 dB",
                 got == want and [o["name"] for o in outs] == ["y.q"]
                 and outs[0]["sqnr_db"] > 30, f"rows {got}, outputs {outs}")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    q8c = sys.argv[1]
    d = q8test.tmpdir()
    rng = np.random.default_rng(1234)
    tensors = {}
    for i in range(3):
        w, b = q8test.pytorch_linear(rng, SIZES[i], SIZES[i + 1])
        tensors[f"fc{i + 1}.weight"], tensors[f"fc{i + 1}.bias"] = w, b
    mlp = Model(d, "mlp", MODEL, tensors, FLOAT_VALUES,
                rng.standard_normal((NSAMPLES, SIZES[0])).astype(F32))
    w1, b1 = q8test.pytorch_linear(rng, 24, 40)
    w2, _ = q8test.pytorch_linear(rng, 24, 16)
    w3, _ = q8test.pytorch_linear(rng, 40, 6)
    branches = Model(d, "branches", BRANCHES,
                     {"w1": w1, "b1": b1, "w2": w2.T.copy(), "w3": w3,
                      "g": rng.uniform(0.5, 1.5, 40).astype(F32),
                      "beta": rng.uniform(-0.1, 0.1, 40).astype(F32)},
                     BRANCH_VALUES, rng.standard_normal((100, 24)).astype(F32))

    t = q8test.Tally()
    check_model(t, q8c, d, mlp, "default", [])
    check_model(t, q8c, d, mlp, "s8-sym", ["--activations=s8-sym", "--calib-batch", "7"])
    check_model(t, q8c, d, mlp, "dynamic", ["--dynamic"])
    check_model(t, q8c, d, mlp, "stop-after-quantize", ["--stop-after=quantize"])
    check_model(t, q8c, d, branches, "branches", [])
    check_model(t, q8c, d, mlp, "keep-float", ["--keep-float=h2", "--calib-method=mse"])
    check_model(t, q8c, d, branches, "branches-keep-float", ["--keep-float=m,@w3"])
    check_model(t, q8c, d, mlp, "stop-after-calibrate", ["--stop-after=calibrate"])
    check_exact(t, q8c, d)
    check_escapes(t, q8c, d, mlp)
    check_bad_samples(t, q8c, d, mlp)
    check_sizes(t, q8c, d)
    check_html(t, q8c, d, mlp)
    check_progress(t, q8c, d, mlp)
    check_time_passes(t, q8c, d, mlp)
    check_user_q_names(t, q8c, d, rng)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
