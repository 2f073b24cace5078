"""test_onnx: ONNX import (docs/import.md), end to end.

Usage: python3 tests/py/test_onnx.py /path/to/q8c

Every model is generated here, in a scratch directory:

  * torch MLPs (Linear, GELU, ReLU, LayerNorm, Softmax) exported with
    torch.onnx.export at opsets 13 and 17 with a dynamic batch axis: the
    float interpreter (`q8c run model.onnx`) matches PyTorch within 1e-5
    relative; `q8c model.onnx --calib` gives bit for bit what the same model
    written by hand in text IR gives, as IR, through a compiled .so and the
    JIT; `q8c import` writes text IR that runs the same;
  * QLinearMatMul, QDQ (QuantizeLinear/DequantizeLinear around MatMul and
    Gemm, with int32 biases, per-tensor and per-channel weights) and
    MatMulInteger -> Cast -> Mul models built with onnx.helper:
    compared with a numpy implementation of ONNX's integer arithmetic
    (the kernels of ONNX Runtime: int32 accumulation, f32 multipliers),
    bit for bit, through the interpreter and a compiled .so;
  * malformed and unsupported files: the exact diagnostic of each is in
    tests/onnx/NAME.err.

Needs torch and onnx (python3-torch, python3-onnx); without them it skips.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32
ERR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx")

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover
    onnx = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def run_npy(q8c, model, x, work, *extra, name="out"):
    xi = os.path.join(work, name + ".in.npy")
    yo = os.path.join(work, name + ".out.npy")
    np.save(xi, x)
    q8test.run(q8c, "run", model, *extra, "-i", xi, "-o", yo)
    return np.load(yo)


# ---- torch models ----

class MLP(torch.nn.Module if torch else object):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(24, 48)
        self.fc2 = torch.nn.Linear(48, 32)
        self.ln = torch.nn.LayerNorm(32)
        self.fc3 = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.fc1(x))
        h = self.ln(torch.relu(self.fc2(h)))
        return torch.softmax(self.fc3(h), -1)


def mlp_ir(model, work):
    """The same MLP written by hand in q8c's text IR, with its weights."""
    sd = {k: v.detach().numpy().astype(F32) for k, v in model.state_dict().items()}
    q8test.write_safetensors(os.path.join(work, "hand.safetensors"), sd)
    text = """model hand {
  weights "hand.safetensors"
  input %x : f32[?, 24]
  %h1 = linear %x, @fc1.weight, @fc1.bias
  %g = gelu %h1
  %h2 = linear %g, @fc2.weight, @fc2.bias
  %r = relu %h2
  %n = layernorm %r, @ln.weight, @ln.bias {eps = 1e-5}
  %h3 = linear %n, @fc3.weight, @fc3.bias
  %y = softmax %h3
  output %y
}
"""
    path = os.path.join(work, "hand.ir")
    open(path, "w").write(text)
    return path


def test_torch(q8c, t):
    torch.manual_seed(0)
    model = MLP().eval()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 24)).astype(F32)
    calib = rng.standard_normal((64, 24)).astype(F32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for opset in (13, 17):
        work = q8test.tmpdir()
        path = os.path.join(work, "mlp.onnx")
        torch.onnx.export(model, torch.randn(2, 24), path, opset_version=opset,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        ir = q8test.run(q8c, path, "--stop-after=verify").stdout
        t.check(f"opset {opset}: ops are linear/gelu/relu/layernorm/softmax",
                all(op in ir for op in ("= linear", "= gelu", "= relu", "= layernorm", "= softmax"))
                and "input %x : f32[?, 24]" in ir, ir)
        y = run_npy(q8c, path, x, work)
        rel = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        t.check(f"opset {opset}: float interpreter matches PyTorch (batch 7)", rel < 1e-5,
                f"relative error {rel:g}")

        # `q8c import` writes IR that runs the same.
        q8test.run(q8c, "import", path, "-o", os.path.join(work, "imported.ir"))
        yi = run_npy(q8c, os.path.join(work, "imported.ir"), x, work)
        t.check(f"opset {opset}: q8c import -o model.ir runs the same", np.array_equal(yi, y))

        # Quantized: the same as the hand-written .ir, bit for bit.
        hand = mlp_ir(model, work)
        np.save(os.path.join(work, "calib.npy"), calib)
        cal = os.path.join(work, "calib.npy")
        q8test.run(q8c, path, "--calib", cal, "-o", os.path.join(work, "q.ir"))
        q8test.run(q8c, hand, "--calib", cal, "-o", os.path.join(work, "qh.ir"))
        yq = run_npy(q8c, os.path.join(work, "q.ir"), x, work)
        yh = run_npy(q8c, os.path.join(work, "qh.ir"), x, work)
        t.check(f"opset {opset}: --calib int8 model equals the hand-written .ir's",
                np.array_equal(yq, yh), f"max diff {np.max(np.abs(yq - yh)):g}")
        t.check(f"opset {opset}: int8 accuracy", q8test.sqnr_db(ref, yq) > 25,
                f"SQNR {q8test.sqnr_db(ref, yq):.1f} dB")
        so = os.path.join(work, "mlp.so")
        q8test.run(q8c, path, "--calib", cal, "-o", so, "--target=generic", "--batch", 7)
        ys = run_npy(q8c, so, x, work)
        t.check(f"opset {opset}: compiled .so equals the int8 IR", np.array_equal(ys, yq),
                f"max diff {np.max(np.abs(ys - yq)):g}")
        yj = run_npy(q8c, os.path.join(work, "q.ir"), x, work, "--jit")
        t.check(f"opset {opset}: JIT equals the int8 IR", np.array_equal(yj, yq))
        rep = q8test.run(q8c, path, "--calib", cal, "--report").stdout
        t.check(f"opset {opset}: --report works", "SQNR" in rep or "sqnr" in rep, rep[:300])


class Shapes(torch.nn.Module if torch else object):
    """Shape subgraphs (Shape, Gather, Unsqueeze, Concat -> Reshape), a
    transpose, a matmul of two activations and a 3-D Linear (MatMul + Add)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 5)
        self.out = torch.nn.Linear(20, 3)

    def forward(self, x):                      # x: [B, 4, 6]
        h = self.fc(x)                         # [B, 4, 5]
        a = torch.matmul(h, h.transpose(1, 2))  # [B, 4, 4]
        h = torch.matmul(a, h) * 0.25 + h      # [B, 4, 5]
        return self.out(h.reshape(h.size(0), -1))


def test_torch_shapes(q8c, t):
    torch.manual_seed(5)
    model = Shapes().eval()
    x = np.random.default_rng(6).standard_normal((3, 4, 6)).astype(F32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for opset in (13, 17):
        work = q8test.tmpdir()
        path = os.path.join(work, "shapes.onnx")
        torch.onnx.export(model, torch.randn(2, 4, 6), path, opset_version=opset,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        ops = {n.op_type for n in onnx.load(path).graph.node}
        ir = q8test.run(q8c, path, "--stop-after=verify").stdout
        t.check(f"shapes opset {opset}: the shape subgraph is folded into reshape [?, 20]",
                {"Shape", "Reshape"} <= ops and "shape = [?, 20]" in ir, f"{sorted(ops)}\n{ir}")
        y = run_npy(q8c, path, x, work)
        rel = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        t.check(f"shapes opset {opset}: float interpreter matches PyTorch", rel < 1e-5,
                f"relative error {rel:g}")


def test_initializers(q8c, t):
    """Initializer encodings: raw and typed fields, F16/BF16/F64 converted,
    and external data inside the model's folder."""
    rng = np.random.default_rng(7)
    k, n = 6, 5
    w = rng.standard_normal((n, k)).astype(F32)
    x = rng.standard_normal((2, k)).astype(F32)
    for enc in ("raw", "typed", "f16", "bf16", "f64", "external"):
        work = q8test.tmpdir()
        if enc == "raw":
            tw = numpy_helper.from_array(w, "W")
            wf = w
        elif enc == "typed":
            tw = helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten().tolist())
            wf = w
        elif enc == "f16":
            wf = w.astype(np.float16).astype(F32)
            tw = numpy_helper.from_array(w.astype(np.float16), "W")
        elif enc == "bf16":
            bits = (w.view(np.uint32) >> 16).astype(np.uint16)
            wf = (bits.astype(np.uint32) << 16).view(F32)
            tw = TensorProto()
            tw.name, tw.data_type = "W", TensorProto.BFLOAT16
            tw.dims.extend(w.shape)
            tw.int32_data.extend(int(b) for b in bits.flatten())
        elif enc == "f64":
            tw = numpy_helper.from_array(w.astype(np.float64), "W")
            wf = w
        else:
            tw = numpy_helper.from_array(w, "W")
            os.makedirs(os.path.join(work, "data"))
            open(os.path.join(work, "data", "w.bin"), "wb").write(b"\0" * 16 + w.tobytes())
            tw.ClearField("raw_data")
            tw.data_location = TensorProto.EXTERNAL
            for key, val in (("location", "data/w.bin"), ("offset", "16"),
                             ("length", str(w.nbytes))):
                e = tw.external_data.add()
                e.key, e.value = key, val
            wf = w
        nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)]
        path = save(mk_model(nodes, [tw], k, n), os.path.join(work, "init.onnx"))
        y = run_npy(q8c, path, x, work)
        ref = (x.astype(np.float64) @ wf.T.astype(np.float64)).astype(F32)
        t.check(f"initializer {enc}", np.allclose(y, ref, rtol=1e-6, atol=1e-6),
                f"max diff {np.max(np.abs(y - ref)):g}")


# ---- numpy: ONNX's integer arithmetic ----

def onnx_quantize(x, s, z, lo=0, hi=255):
    q = np.rint(x.astype(F32) / F32(s)) + z
    return np.clip(q, lo, hi).astype(np.int32)


def onnx_dequantize(q, s, z):
    return (np.float32(q - z).astype(F32) * F32(s)).astype(F32)


def qlinear_matmul_ref(xq, sa, za, wq, sb, sy, zy):
    acc = (xq.astype(np.int64) - za) @ wq.astype(np.int64)
    acc = acc.astype(np.int32)
    mult = (F32(sa) * np.asarray(sb, F32)).astype(F32) / F32(sy)
    v = np.rint((acc.astype(F32) * mult).astype(F32))
    return np.clip(v + zy, 0, 255).astype(np.int32)


def save(model, path):
    onnx.save(model, path)
    return path


def mk_model(nodes, inits, k, n, opset=13, out_shape=None):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def quant_weights(rng, k, n, per_channel):
    w = rng.standard_normal((k, n)).astype(F32)
    m = np.max(np.abs(w), axis=0) if per_channel else np.max(np.abs(w))
    sw = (m / 127).astype(F32)
    wq = np.clip(np.rint(w / sw), -127, 127).astype(np.int8)
    return wq, np.asarray(sw, F32)


def test_qlinear_matmul(q8c, t):
    rng = np.random.default_rng(2)
    k, n = 40, 24
    for per_channel in (False, True):
        work = q8test.tmpdir()
        wq, sw = quant_weights(rng, k, n, per_channel)
        sx, zx, sy, zy = 0.031, 117, 0.27, 131
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
            helper.make_node("QLinearMatMul", ["xq", "sx", "zx", "W", "sw", "zw", "sy", "zy"], ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"]),
        ]
        inits = [numpy_helper.from_array(np.array(sx, F32), "sx"),
                 numpy_helper.from_array(np.array(zx, np.uint8), "zx"),
                 numpy_helper.from_array(wq, "W"),
                 numpy_helper.from_array(sw, "sw"),
                 numpy_helper.from_array(np.zeros(sw.shape, np.int8), "zw"),
                 numpy_helper.from_array(np.array(sy, F32), "sy"),
                 numpy_helper.from_array(np.array(zy, np.uint8), "zy")]
        path = save(mk_model(nodes, inits, k, n), os.path.join(work, "qlm.onnx"))
        x = (rng.standard_normal((33, k)) * 2).astype(F32)
        xq = onnx_quantize(x, sx, zx)
        ref = onnx_dequantize(qlinear_matmul_ref(xq, sx, zx, wq, sw, sy, zy), sy, zy)
        tag = "per-channel" if per_channel else "per-tensor"
        y = run_npy(q8c, path, x, work)
        t.check(f"QLinearMatMul {tag}: interpreter equals ONNX integer arithmetic",
                np.array_equal(y, ref), f"{np.sum(y != ref)} of {y.size} differ")
        so = os.path.join(work, "qlm.so")
        q8test.run(q8c, path, "-o", so, "--target=generic", "--batch", 33)
        ys = run_npy(q8c, so, x, work)
        t.check(f"QLinearMatMul {tag}: compiled .so equals ONNX integer arithmetic",
                np.array_equal(ys, ref), f"{np.sum(ys != ref)} of {ys.size} differ")


def test_qdq(q8c, t, relu):
    """ONNX Runtime's QDQ form: Q/DQ on activations, DQ'd int8 weights and
    int32 biases (scale x_scale * w_scale), MatMul + Add and Gemm."""
    rng = np.random.default_rng(3)
    tag = "QDQ" + (" with relu" if relu else "")
    k, h, n = 32, 20, 12
    work = q8test.tmpdir()
    w1q, s1 = quant_weights(rng, k, h, True)
    w2q, s2 = quant_weights(rng, h, n, False)
    sx, zx, sh, zh = 0.023, 121, 0.05, 0
    b1s = (F32(sx) * s1).astype(F32)
    b2s = (F32(sh) * s2).astype(F32)
    b1q = rng.integers(-3000, 3000, h).astype(np.int32)
    b2q = rng.integers(-3000, 3000, n).astype(np.int32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
        helper.make_node("DequantizeLinear", ["W1q", "s1"], ["W1"], axis=1),
        helper.make_node("DequantizeLinear", ["b1q", "b1s"], ["b1"], axis=0),
        helper.make_node("MatMul", ["xd", "W1"], ["mm"]),
        helper.make_node("Add", ["mm", "b1"], ["h"]),
        helper.make_node("Relu" if relu else "Identity", ["h"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "sh", "zh"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "sh", "zh"], ["rd"]),
        helper.make_node("DequantizeLinear", ["W2q", "s2"], ["W2"]),
        helper.make_node("DequantizeLinear", ["b2q", "b2s"], ["b2"]),
        helper.make_node("Gemm", ["rd", "W2", "b2"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(np.array(sx, F32), "sx"),
             numpy_helper.from_array(np.array(zx, np.uint8), "zx"),
             numpy_helper.from_array(w1q, "W1q"), numpy_helper.from_array(s1, "s1"),
             numpy_helper.from_array(b1q, "b1q"), numpy_helper.from_array(b1s, "b1s"),
             numpy_helper.from_array(np.array(sh, F32), "sh"),
             numpy_helper.from_array(np.array(zh, np.uint8), "zh"),
             numpy_helper.from_array(np.ascontiguousarray(w2q.T), "W2q"),
             numpy_helper.from_array(np.array(s2, F32), "s2"),
             numpy_helper.from_array(b2q, "b2q"), numpy_helper.from_array(b2s, "b2s")]
    path = save(mk_model(nodes, inits, k, n), os.path.join(work, "qdq.onnx"))
    ir = q8test.run(q8c, path, "--stop-after=verify").stdout
    t.check(f"{tag}: MatMul and Gemm become qgemm with the model's parameters",
            ir.count("= qgemm") == 2 and "= linear" not in ir and "= matmul" not in ir, ir)
    x = (rng.standard_normal((17, k)) * 1.5).astype(F32)
    # ONNX integer arithmetic: int32 accumulation with the int32 bias, the
    # f32 product of the scales as multiplier.
    xq = onnx_quantize(x, sx, zx)
    acc1 = ((xq - zx).astype(np.int64) @ w1q.astype(np.int64) + b1q).astype(np.int32)
    h1 = (acc1.astype(F32) * b1s).astype(F32)
    r = np.maximum(h1, F32(0)) if relu else h1
    rq = onnx_quantize(r, sh, zh)
    acc2 = ((rq - zh).astype(np.int64) @ w2q.astype(np.int64) + b2q).astype(np.int32)
    ref = (acc2.astype(F32) * b2s).astype(F32)
    y = run_npy(q8c, path, x, work)
    t.check(f"{tag}: interpreter equals ONNX integer arithmetic", np.array_equal(y, ref),
            f"{np.sum(y != ref)} of {y.size} differ, max {np.max(np.abs(y - ref)):g}")
    so = os.path.join(work, "qdq.so")
    q8test.run(q8c, path, "-o", so, "--target=generic", "--batch", 17)
    ys = run_npy(q8c, so, x, work)
    t.check(f"{tag}: compiled .so (no calibration) equals ONNX integer arithmetic",
            np.array_equal(ys, ref), f"{np.sum(ys != ref)} of {ys.size} differ")


def test_matmul_integer(q8c, t):
    """MatMulInteger on a quantized input -> Cast -> Mul by the scales."""
    rng = np.random.default_rng(4)
    k, n = 36, 16
    for per_channel in (False, True):
        work = q8test.tmpdir()
        wq, sw = quant_weights(rng, k, n, per_channel)
        sx, zx = 0.04, 119
        scale = (F32(sx) * sw).astype(F32)
        b = rng.standard_normal(n).astype(F32)
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
            helper.make_node("MatMulInteger", ["xq", "W", "zx"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["accf", "scale"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["y"]),
        ]
        inits = [numpy_helper.from_array(np.array(sx, F32), "sx"),
                 numpy_helper.from_array(np.array(zx, np.uint8), "zx"),
                 numpy_helper.from_array(wq, "W"), numpy_helper.from_array(scale, "scale"),
                 numpy_helper.from_array(b, "b")]
        path = save(mk_model(nodes, inits, k, n), os.path.join(work, "mmi.onnx"))
        x = (rng.standard_normal((11, k)) * 3).astype(F32)
        q = onnx_quantize(x, sx, zx)
        acc = ((q - zx).astype(np.int64) @ wq.astype(np.int64)).astype(np.int32)
        ref = ((acc.astype(F32) * scale).astype(F32) + b).astype(F32)
        tag = "per-channel" if per_channel else "per-tensor"
        ir = q8test.run(q8c, path, "--stop-after=verify").stdout
        t.check(f"MatMulInteger {tag}: the pattern becomes qgemm", "= qgemm" in ir, ir)
        y = run_npy(q8c, path, x, work)
        t.check(f"MatMulInteger {tag}: interpreter equals ONNX integer arithmetic",
                np.array_equal(y, ref), f"{np.sum(y != ref)} of {y.size} differ")
        so = os.path.join(work, "mmi.so")
        q8test.run(q8c, path, "-o", so, "--target=generic", "--batch", 11)
        ys = run_npy(q8c, so, x, work)
        t.check(f"MatMulInteger {tag}: compiled .so equals ONNX integer arithmetic",
                np.array_equal(ys, ref), f"{np.sum(ys != ref)} of {ys.size} differ")


# ---- malformed and unsupported files ----

def mlp_bytes():
    k, n = 4, 3
    w = np.arange(k * n, dtype=F32).reshape(n, k) / 10
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1, name="fc")]
    return mk_model(nodes, [numpy_helper.from_array(w, "W")], k, n)


def bad_models(work):
    """NAME -> bytes (or a function writing the case into work)."""
    cases = {}
    good = mlp_bytes().SerializeToString()
    cases["truncated"] = good[: len(good) - 7]
    # ModelProto field 7 (graph) written as a varint: a wrong wire type.
    cases["wire_type"] = b"\x08\x07\x38\x01"
    m = mlp_bytes()
    big = TensorProto()
    big.name = "huge"
    big.data_type = TensorProto.FLOAT
    big.dims.extend([1 << 40, 1 << 40])
    big.raw_data = b"\0" * 4
    m.graph.initializer.append(big)
    cases["dims_overflow"] = m.SerializeToString()
    m = mlp_bytes()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:8]
    cases["short_data"] = m.SerializeToString()
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="r1"),
             helper.make_node("Relu", ["a"], ["b"], name="r2"),
             helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    cases["cycle"] = mk_model(nodes, [], 4, 4).SerializeToString()
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    cases["missing_init"] = mk_model(nodes, [], 4, 3).SerializeToString()
    m = mlp_bytes()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "../secret.bin"
    cases["external_escape"] = m.SerializeToString()
    nodes = [helper.make_node("Cos", ["x"], ["y"], name="act")]
    cases["unsupported_op"] = mk_model(nodes, [], 4, 4).SerializeToString()
    nodes = [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=0)]
    cases["softmax_axis"] = mk_model(nodes, [], 4, 4, opset=11).SerializeToString()
    # The transformer ops' refusals (docs/import.md, "Transformers").
    nodes = [helper.make_node("Where", ["m", "x", "c"], ["y"], name="mask")]
    cases["where_not_causal"] = mk_model(
        nodes, [numpy_helper.from_array(np.array([[True, False, True, True]]), "m"),
                numpy_helper.from_array(np.array(-1e9, F32), "c")], 4, 4).SerializeToString()
    nodes = [helper.make_node("Where", ["m", "x", "x"], ["y"], name="sel")]
    cases["where_computed"] = mk_model(
        nodes, [numpy_helper.from_array(np.array([True, False, True, True]), "m")],
        4, 4).SerializeToString()
    # Trilu of an activation (torch's triu exports it; q8c folds it on
    # constants only, the causal mask).
    nodes = [helper.make_node("Trilu", ["x"], ["y"], name="upper")]
    cases["trilu_computed"] = mk_model(nodes, [], 4, 4, opset=14).SerializeToString()
    nodes = [helper.make_node("Pow", ["x", "e"], ["y"], name="cube")]
    cases["pow_exponent"] = mk_model(
        nodes, [numpy_helper.from_array(np.array(3, F32), "e")], 4, 4).SerializeToString()
    nodes = [helper.make_node("Sqrt", ["x"], ["y"], name="root")]
    cases["sqrt_computed"] = mk_model(nodes, [], 4, 4).SerializeToString()
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="every2nd")]
    cases["slice_step"] = mk_model(
        nodes, [numpy_helper.from_array(np.array([0], np.int64), n) for n in ("s", "a")] +
        [numpy_helper.from_array(np.array([8], np.int64), "e"),
         numpy_helper.from_array(np.array([2], np.int64), "st")], 8, 4).SerializeToString()
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)]
    cases["gather_computed"] = mk_model(
        nodes, [numpy_helper.from_array(np.array([0, 2], np.int64), "i")], 4, 2).SerializeToString()
    # An int64 input used both as ids and, cast, as floats: no cast op.
    nodes = [helper.make_node("Cast", ["ids"], ["f"], name="tofloat", to=TensorProto.FLOAT),
             helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("Unsqueeze", ["f", "ax"], ["f3"], name="u"),
             helper.make_node("Add", ["e", "f3"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 3])],
                          initializer=[numpy_helper.from_array(np.ones((10, 3), F32), "table"),
                                       numpy_helper.from_array(np.array([2], np.int64), "ax")])
    cases["cast_ids_to_float"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    # x.view(-1, D) folding the batch into rows, used other than by a linear.
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="rows"),
             helper.make_node("Relu", ["r"], ["y"], name="act")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
                          initializer=[numpy_helper.from_array(np.array([-1, 3], np.int64), "s")])
    cases["rows_view"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    # A causally masked tensor that goes elsewhere than a softmax.
    nodes = [helper.make_node("Where", ["m", "x", "c"], ["w"], name="causal"),
             helper.make_node("Relu", ["w"], ["y"], name="r")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 4])],
                          initializer=[numpy_helper.from_array(np.tril(np.ones((4, 4), bool)), "m"),
                                       numpy_helper.from_array(np.array(-1e9, F32), "c")])
    cases["causal_not_softmax"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])])
    cases["unknown_dim"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1, foo=3)]
    cases["unknown_attr"] = mk_model(nodes, [numpy_helper.from_array(np.ones((3, 4), F32), "W")],
                                     4, 3).SerializeToString()
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 3])],
                          initializer=[numpy_helper.from_array(np.ones((5, 1), F32), "c")])
    cases["broadcast"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])])
    cases["symbolic_dim"] = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    cases["s8_activations"] = mk_model(
        nodes, [numpy_helper.from_array(np.array(0.1, F32), "s"),
                numpy_helper.from_array(np.array(0, np.int8), "z")], 4, 4).SerializeToString()
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name="dq"),
             helper.make_node("MatMulInteger", ["q", "W", "z"], ["y"], name="mmi")]
    cases["dynamic_quantize"] = mk_model(
        nodes, [numpy_helper.from_array(np.ones((4, 4), np.int8), "W")], 4, 4).SerializeToString()
    cases.update(dynamic_quantize_models())
    w = np.full((4, 3), -128, np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant"),
             helper.make_node("QLinearMatMul", ["q", "s", "z", "W", "s", "zw", "s", "z"], ["yq"],
                              name="qmm"),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dq")]
    cases["weight_minus128"] = mk_model(
        nodes, [numpy_helper.from_array(np.array(0.1, F32), "s"),
                numpy_helper.from_array(np.array(128, np.uint8), "z"),
                numpy_helper.from_array(np.array(0, np.int8), "zw"),
                numpy_helper.from_array(w, "W")], 4, 3).SerializeToString()
    for kind, loc in (("symlink", "link.bin"), ("absolute", "/etc/passwd")):
        m = mlp_bytes()
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", loc
        cases["external_" + kind] = m.SerializeToString()
    m = mlp_bytes()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, val in (("location", "w.bin"), ("offset", "40")):
        e = t.external_data.add()
        e.key, e.value = key, val
    cases["external_short"] = m.SerializeToString()
    m = mlp_bytes()
    big = TensorProto()
    big.name, big.data_type = "big", TensorProto.FLOAT
    big.dims.extend([1024, 1024])
    big.raw_data = b"\0" * 4
    m.graph.initializer.append(big)
    cases["over_cap"] = m.SerializeToString()
    return cases


def dynamic_quantize_models():
    """ONNX Runtime's quantize_dynamic pattern, malformed: the nodes between
    DynamicQuantizeLinear and the final Mul, changed one at a time."""
    def dyn(mmi_in=("q", "W", "z", "Wz"), muls=(("s", "Ws", "sw"), ("accf", "sw", "y")),
            extra=(), w=np.ones((4, 3), np.int8), wz=np.array(0, np.int8)):
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name="dql"),
                 helper.make_node("MatMulInteger", list(mmi_in), ["acc"], name="mmi"),
                 helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT, name="cast")]
        nodes += [helper.make_node("Mul", [a, b], [o], name="mul_" + o) for a, b, o in muls]
        nodes += list(extra)
        inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(wz, "Wz"),
                 numpy_helper.from_array(np.array(0.02, F32), "Ws"),
                 numpy_helper.from_array(np.array(9, np.uint8), "z9")]
        return mk_model(nodes, inits, 4, 3).SerializeToString()
    return {
        # the scales multiplied after the cast, one at a time: another rounding
        "dynamic_mul_order": dyn(muls=(("accf", "s", "t"), ("t", "Ws", "y"))),
        # MatMulInteger's a_zero_point a constant, not DynamicQuantizeLinear's
        "dynamic_zero_point": dyn(mmi_in=("q", "W", "z9", "Wz"),
                                  muls=(("s", "Ws", "sw"), ("accf", "sw", "y"))),
        # y also read by another node
        "dynamic_other_use": dyn(extra=[helper.make_node("DequantizeLinear", ["q", "s", "z"],
                                                         ["dq"], name="deq")]),
        # u8 weights with per-column zero points B - zp does not fit int8
        "dynamic_u8_columns": dyn(w=np.array([[0, 255, 3]] * 4, np.uint8),
                                  wz=np.array([128, 0, 3], np.uint8)),
    }


def test_errors(q8c, t, update):
    work = q8test.tmpdir()
    os.makedirs(os.path.join(work, "m"))
    open(os.path.join(work, "secret.bin"), "wb").write(b"\0" * 64)
    open(os.path.join(work, "m", "w.bin"), "wb").write(b"\0" * 64)
    os.symlink(os.path.join(work, "secret.bin"), os.path.join(work, "m", "link.bin"))
    for name, data in sorted(bad_models(work).items()):
        rel = os.path.join("m", name + ".onnx")
        open(os.path.join(work, rel), "wb").write(data)
        env = dict(os.environ, Q8_MAX_TENSOR_BYTES="1M") if name == "over_cap" else None
        r = q8test.subprocess.run([q8c, rel, "--stop-after=verify"], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=60)
        want_path = os.path.join(ERR_DIR, "err_" + name + ".err")
        if update:
            open(want_path, "w").write(r.stderr)
        want = open(want_path).read() if os.path.exists(want_path) else None
        t.check(f"error: {name}", r.returncode == 1 and r.stderr == want,
                f"exit {r.returncode}\n--- want\n{want}--- got\n{r.stderr}")


def main():
    q8c = os.path.abspath(sys.argv[1])
    update = "--update" in sys.argv[2:]
    t = q8test.Tally()
    if onnx is None:
        t.skip("onnx", "python3-onnx is not installed")
        return t.finish() if False else 0
    test_errors(q8c, t, update)
    test_qlinear_matmul(q8c, t)
    test_qdq(q8c, t, True)
    test_qdq(q8c, t, False)
    test_matmul_integer(q8c, t)
    if torch is None:
        t.skip("torch models", "python3-torch is not installed")
    else:
        test_torch(q8c, t)
        test_torch_shapes(q8c, t)
    test_initializers(q8c, t)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
