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
  * sizes against the byte counts of the weights files (exact).

The same for --activations=s8-sym with --calib-batch 7, --dynamic,
--stop-after=quantize (qlinear between quantize and dequantize), and a
branching model: two layers sharing one quantized input, a matmul by a
constant, a layernorm between int8 layers, two outputs.

Also: the text report (one row per layer, the size line), a model whose
int8 arithmetic is exact (SQNR inf -> null / "inf"), a calibration path that
needs JSON escapes, and a file that does not fit the model (an error, exit 1).
"""
import json
import math
import os
import sys

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
    qnodes = [n for n in ir["nodes"] if n["op"] in QUANTIZED_OPS]
    t.record(f"{name}: samples and calib", rep["samples"] == mod.nsamples and rep["calib"] == calib,
             f"{rep['samples']} from {rep['calib']}")
    names = [strip_q(n["name"]) for n in qnodes]
    t.record(f"{name}: one layer per quantized op, in order",
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
        wq = consts[node["operands"][1][1]]
        in_node = next((n for n in ir["nodes"] if n["name"] == node["operands"][0][1]), None)
        in_dtype = in_node["type"][0] if in_node else "f32"
        if node["op"] == "qlinear_dyn":
            want_in = {"dtype": "u8", "scale": None, "zero_point": None}
        else:
            want_in = {"dtype": a["x_dtype"], "scale": a["x_scale"], "zero_point": a["x_zero_point"]}
        out_dtype = node["type"][0]
        want_out = ({"dtype": "f32", "scale": None, "zero_point": None} if out_dtype == "f32" else
                    {"dtype": out_dtype, "scale": a["scale"], "zero_point": a["zero_point"]})
        params_ok = (
            layer["op"] == node["op"]
            and layer["weight_shape"] == list(wq.shape)
            and layer["relu"] == (a.get("relu", 0) == 1)
            and layer["input"]["dtype"] == want_in["dtype"]
            and layer["input"]["zero_point"] == want_in["zero_point"]
            and close(layer["input"]["scale"], want_in["scale"])
            and layer["output"]["dtype"] == want_out["dtype"]
            and layer["output"]["zero_point"] == want_out["zero_point"]
            and close(layer["output"]["scale"], want_out["scale"])
        )
        t.record(f"{label}: op, shape, relu, input and output parameters", params_ok,
                 f"json {layer['op']} {layer['weight_shape']} relu {layer['relu']} "
                 f"in {layer['input']} out {layer['output']}; q.ir {node['op']} {list(wq.shape)} "
                 f"{a} (input {in_dtype})")
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

    # Sizes: every constant, from the weights files.
    f32_bytes = sum(v.nbytes for v in q8test.read_safetensors(mod.weights).values())
    int8_bytes = sum(v.nbytes for v in consts.values())
    size = rep["size"]
    t.record(f"{name}: size", size["f32_bytes"] == f32_bytes and size["int8_bytes"] == int8_bytes
             and size["saved_bytes"] == f32_bytes - int8_bytes
             and close(size["ratio"], f32_bytes / int8_bytes),
             f"json {size}, files {f32_bytes} and {int8_bytes} bytes")

    # The text report: a header naming the samples, a row per layer, sizes.
    lines = text.splitlines()
    rows = [l for l in lines if len(l.split()) > 1 and (l.split()[0], l.split()[1]) in
            set(zip(names, [n["op"] for n in qnodes]))]
    t.record(f"{name}: text has one row per layer", len(rows) == len(qnodes),
             f"{len(rows)} rows for {len(qnodes)} layers")
    widths = {len(l) for l in rows + [l for l in lines if l.startswith("layer ")]}
    t.record(f"{name}: text rows aligned", len(widths) == 1, f"line lengths {sorted(widths)}")
    t.record(f"{name}: text header", bool(lines) and lines[0] ==
             f"q8c report: {mod.nsamples} samples from {calib}", lines[0] if lines else "(empty)")
    want_size = f"model size: f32 {f32_bytes / 1024:.1f} KiB, int8 {int8_bytes / 1024:.1f} KiB"
    t.record(f"{name}: text size line", any(l.startswith(want_size) for l in lines),
             f"want '{want_size}...' in {lines[-1:]}")


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
    row = [l for l in text.splitlines() if l.startswith("y ")]
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
    check_exact(t, q8c, d)
    check_escapes(t, q8c, d, mlp)
    check_bad_samples(t, q8c, d, mlp)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
