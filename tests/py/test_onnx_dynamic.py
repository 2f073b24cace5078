"""test_onnx_dynamic: ONNX's DynamicQuantizeLinear in the graph ONNX
Runtime's quantize_dynamic writes (docs/import.md), imported as qlinear_dyn
{granularity = tensor} and compared byte for byte.

usage: test_onnx_dynamic.py /path/to/q8c

Per MatMul by a constant W the graph is

    y, y_scale, y_zp = DynamicQuantizeLinear(x)
    acc = MatMulInteger(y, W_q, y_zp, W_zp)
    out = Mul(Cast(acc, FLOAT), Mul(y_scale, W_scale))  [-> Add(bias)]

1. MLPs of two such layers (ReLU between) built with onnx.helper: i8
   weights (zero point 0, and a non-zero one), u8 weights with one zero
   point and with one per column, W_scale per tensor and per column, with
   and without a bias, the Muls' operands in either order; inputs with a
   zero row, and an all-zero tensor (scale 1, zero point 0: ONNX Runtime's
   rule). The interpreter (`q8c run model.onnx`) equals a numpy
   implementation of ONNX's arithmetic (below); the compiled .so on every
   x86 variant the CPU runs (and the JIT on the best), and every AArch64
   variant under qemu-user, equals the interpreter byte for byte; the other
   x86 variants compile.
2. The reference GPT-2 (examples/transformers/gen.py, tiny), exported from
   PyTorch and rewritten by bench/peers/onnx_dynamic_int8.py: every
   projection becomes a qlinear_dyn {granularity = tensor}; q8c's logits
   equal a numpy evaluation of the same ONNX graph (float ops by numpy in
   f32, the integer layers by the arithmetic below) within float rounding
   of the float ops, and the compiled .so equals the interpreter byte for
   byte.
3. `q8c import` of a rewritten MLP writes text IR that gives the same bytes.

Needs numpy and onnx (python3-onnx); torch for part 2.
"""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402
from test_attn_kernels import Check  # noqa: E402

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover
    onnx = None

F32 = np.float32
Q8C = os.path.abspath(sys.argv[1])
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


# ---- numpy: ONNX's arithmetic ----

def dynamic_quantize(x):
    """DynamicQuantizeLinear as ONNX Runtime computes it, each step in f32:
    an all-zero tensor gives scale 1 and zero point 0."""
    x = np.asarray(x, F32)
    lo = min(F32(0), x.min()) if x.size else F32(0)
    hi = max(F32(0), x.max()) if x.size else F32(0)
    s = F32(1) if hi == lo else F32(F32(hi - lo) / F32(255))
    zf = F32(F32(0) - F32(lo / s))
    zf = zf if zf < F32(255) else F32(255)
    zf = zf if F32(0) < zf else F32(0)
    z = int(np.rint(zf))
    q = np.clip(np.rint((x / s).astype(F32)) + z, 0, 255).astype(np.int64)
    return q, s, z


def dyn_layer(x, wq, wz, ws, b):
    """MatMulInteger -> Cast -> Mul(., y_scale * W_scale) [-> Add(b)]."""
    q, s, z = dynamic_quantize(x)
    acc = ((q - z) @ (wq.astype(np.int64) - np.asarray(wz, np.int64))).astype(np.int32)
    y = (acc.astype(F32) * (F32(s) * np.asarray(ws, F32)).astype(F32)).astype(F32)
    if b is not None:
        y = (y + b).astype(F32)
    return y


# ---- the models ----

class Layer:
    """One MatMul rewritten ORT-style: W [K, N] quantized as `kind`."""

    def __init__(self, rng, k, n, kind, per_col_scale, bias, swap):
        w = rng.standard_normal((k, n)).astype(F32)
        self.swap, self.n = swap, n
        if kind in ("s8", "s8r"):  # quantize_dynamic's default: symmetric, [-127, 127]
            top = 127 if kind == "s8" else 63  # s8r: reduce_range's 7 bits
            m = np.max(np.abs(w), axis=0) if per_col_scale else np.max(np.abs(w))
            self.ws = np.asarray(m / top, F32)
            self.wq = np.clip(np.rint(w / self.ws), -top, top).astype(np.int8)
            self.wz = np.array(0, np.int8)
        elif kind == "s8z":  # i8 with a zero point
            self.wq = rng.integers(-100, 120, (k, n)).astype(np.int8)
            self.wz = np.array(-7, np.int8)
            self.ws = np.asarray(rng.uniform(0.005, 0.02, n if per_col_scale else ()), F32)
        elif kind == "u8":  # asymmetric, one zero point: W_q - W_zp spans [-255, 255]
            lo, hi = min(w.min(), 0), max(w.max(), 0)
            self.ws = np.asarray((hi - lo) / 255, F32)
            z = int(np.rint(-lo / self.ws))
            self.wq = np.clip(np.rint(w / self.ws) + z, 0, 255).astype(np.uint8)
            self.wq[0, 0], self.wq[1, 0] = 0, 255
            self.wz = np.array(z, np.uint8)
            if per_col_scale:
                self.ws = np.asarray(rng.uniform(0.5, 1.5, n) * self.ws, F32)
        else:  # "u8col": a zero point per column, W_q - W_zp within int8
            self.wz = rng.integers(100, 156, n).astype(np.uint8)
            self.wq = (rng.integers(-100, 100, (k, n)) + self.wz).astype(np.uint8)
            self.ws = np.asarray(rng.uniform(0.005, 0.02, n if per_col_scale else ()), F32)
        self.b = rng.standard_normal(n).astype(F32) if bias else None

    def nodes(self, p, x, out):
        """The nodes and initializers computing out from x."""
        mm = p + "_mm" if self.b is not None else out
        pair = lambda a, b: [b, a] if self.swap else [a, b]  # noqa: E731
        nodes = [
            helper.make_node("DynamicQuantizeLinear", [x], [p + "_xq", p + "_xs", p + "_xz"],
                             name=p + "_dql"),
            helper.make_node("MatMulInteger", [p + "_xq", p + "_W", p + "_xz", p + "_Wz"],
                             [p + "_acc"], name=p + "_mmi"),
            helper.make_node("Cast", [p + "_acc"], [p + "_accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", pair(p + "_xs", p + "_Ws"), [p + "_s"]),
            helper.make_node("Mul", pair(p + "_accf", p + "_s"), [mm]),
        ]
        inits = [numpy_helper.from_array(self.wq, p + "_W"),
                 numpy_helper.from_array(self.wz, p + "_Wz"),
                 numpy_helper.from_array(self.ws, p + "_Ws")]
        if self.b is not None:
            nodes.append(helper.make_node("Add", pair(mm, p + "_b"), [out]))
            inits.append(numpy_helper.from_array(self.b, p + "_b"))
        return nodes, inits

    def ref(self, x):
        return dyn_layer(x, self.wq, self.wz, self.ws, self.b)


def mlp_model(l1, l2, k):
    n1, i1 = l1.nodes("fc1", "x", "h")
    n2, i2 = l2.nodes("fc2", "hr", "y")
    nodes = n1 + [helper.make_node("Relu", ["h"], ["hr"])] + n2
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", l2.n])],
        initializer=i1 + i2)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def mlp_ref(l1, l2, x):
    h = l1.ref(x)
    return l2.ref(np.where(h > 0, h, F32(0)).astype(F32))


# (label, layer 1, layer 2): (kind, per-column scale, bias, swapped operands)
MLPS = [
    ("s8 per-tensor, bias", ("s8", False, True, False), ("s8", False, True, False)),
    ("s8 per-column, swapped, no bias", ("s8", True, False, True), ("s8", True, True, False)),
    ("s8 zero point, bias", ("s8z", False, True, True), ("s8z", True, False, False)),
    ("u8 per-tensor zp, per-column scale", ("u8", True, True, False), ("u8", False, False, True)),
    ("u8 per-column zp", ("u8col", False, True, False), ("u8col", True, True, True)),
    ("s8 7-bit (reduce_range)", ("s8r", True, True, False), ("s8r", False, True, True)),
]
ORT_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_run.js")
ORT_PATH = os.path.join(os.path.dirname(Q8C), "peers", "node_modules")


def why_no_ort():
    if not os.path.isdir(os.path.join(ORT_PATH, "onnxruntime-node")):
        return ("no ONNX Runtime (npm install --prefix build/peers --ignore-scripts "
                "onnxruntime-node@1.30.0)")
    if subprocess.run(["node", "--version"], capture_output=True).returncode != 0:
        return "no node"
    return None


def ort_run(path, x, level, d):
    """ONNX Runtime's output for x, or None when it fails."""
    xb, yb = os.path.join(d, "x.f32"), os.path.join(d, "y.f32")
    np.ascontiguousarray(x, F32).tofile(xb)
    r = subprocess.run(["node", ORT_JS, path, level, xb, str(x.shape[0]), str(x.shape[1]), yb],
                       env=dict(os.environ, NODE_PATH=ORT_PATH), capture_output=True, text=True,
                       timeout=300)
    return np.fromfile(yb, F32) if r.returncode == 0 else None


def test_ort(t, rng, figures):
    """ONNX Runtime on the same models: equal to ONNX's arithmetic (numpy)
    and so to q8c, bit for bit, where its kernels compute it: u8 weights, and
    i8 weights of 7 bits. With full-range i8 weights, MLAS's AVX2 kernel
    (vpmaddubsw) saturates pairs of products at int16 on CPUs without VNNI,
    so ORT's output there is not ONNX's arithmetic: reported, not checked."""
    why = why_no_ort()
    if why:
        t.skip("ONNX Runtime comparison", why)
        return
    k = 37
    for label, a, b in MLPS:
        d = q8test.tmpdir()
        l1, l2 = Layer(rng, k, 29, *a), Layer(rng, 29, 13, *b)
        path = os.path.join(d, "m.onnx")
        onnx.save(mlp_model(l1, l2, k), path)
        x = (rng.standard_normal((7, k)) * 2).astype(F32)
        x[3] = 0
        full_s8 = "s8" in (a[0], b[0]) or "s8z" in (a[0], b[0])
        for xv in (x, np.zeros((3, k), F32)):
            ref = mlp_ref(l1, l2, xv).ravel()
            for level in ("disabled", "all"):
                y = ort_run(path, xv, level, d)
                what = "%s, %s, ORT %s" % (label, "zeros" if not xv.any() else "zero row", level)
                if y is None or not full_s8 or not xv.any():
                    t.check(what + ": ONNX Runtime equals ONNX's arithmetic (numpy) and q8c",
                            y is not None and np.array_equal(y, ref),
                            "failed" if y is None else "%d differ" % np.sum(y != ref))
                else:
                    figures.append("figure %s: %d of %d outputs differ from ONNX's arithmetic "
                                   "(ORT's saturating vpmaddubsw on this CPU)" % (
                                       what, np.sum(y != ref), ref.size))
A64_MLPS = {"s8 per-tensor, bias", "u8 per-tensor zp, per-column scale"}


def test_mlps(t, chk, rng):
    k, n1, n2, rows = 37, 29, 13, 7
    for label, a, b in MLPS:
        d = q8test.tmpdir()
        l1, l2 = Layer(rng, k, n1, *a), Layer(rng, n1, n2, *b)
        path = os.path.join(d, "m.onnx")
        onnx.save(mlp_model(l1, l2, k), path)
        ir = chk_ir(path)
        t.check("%s: two qlinear_dyn {granularity = tensor}" % label,
                ir.count("qlinear_dyn") == 2 and ir.count("granularity = tensor") == 2, ir)
        x = (rng.standard_normal((rows, k)) * 2).astype(F32)
        x[3] = 0
        cases = [("zero row", x, rows)]
        if label == MLPS[0][0]:
            cases.append(("zero tensor", np.zeros((3, k), F32), 3))
        for what, xv, batch in cases:
            dd = q8test.tmpdir()
            p = os.path.join(dd, "m.onnx")
            onnx.save(onnx.load(path), p)
            inputs = {"x": os.path.join(dd, "x.npy")}
            np.save(inputs["x"], xv)
            ref = mlp_ref(l1, l2, xv)
            got = os.path.join(dd, "interp.npy")
            q8test.run(Q8C, "run", p, "-i", inputs["x"], "-o", got)
            y = np.load(got)
            t.check("%s, %s: interpreter equals ONNX's arithmetic (numpy)" % (label, what),
                    y.dtype == F32 and np.array_equal(y, ref),
                    "%d of %d differ" % (np.sum(y != ref), ref.size))
            chk.run("%s, %s" % (label, what), p, inputs, ("y",), batch,
                    what == "zero row" and label in A64_MLPS)


def chk_ir(path):
    return q8test.run(Q8C, path, "--stop-after=verify").stdout


def test_import(t, rng):
    """q8c import writes the qlinear_dyn, and its .ir runs the same."""
    d = q8test.tmpdir()
    l1, l2 = Layer(rng, 20, 12, "u8", True, True, False), Layer(rng, 12, 5, "s8", False, True, True)
    path = os.path.join(d, "m.onnx")
    onnx.save(mlp_model(l1, l2, 20), path)
    ir = os.path.join(d, "m.ir")
    q8test.run(Q8C, "import", path, "-o", ir)
    text = open(ir).read()
    t.check("import: writes qlinear_dyn {granularity = tensor, w_zero_point}",
            "granularity = tensor, w_zero_point = " in text, text)
    x = (rng.standard_normal((5, 20)) * 3).astype(F32)
    xp = os.path.join(d, "x.npy")
    np.save(xp, x)
    outs = []
    for src in (path, ir):
        o = os.path.join(d, "y%d.npy" % len(outs))
        q8test.run(Q8C, "run", src, "-i", xp, "-o", o)
        outs.append(np.load(o))
    t.check("import: the .ir's output equals the .onnx's, bit for bit",
            outs[0].tobytes() == outs[1].tobytes() and np.array_equal(outs[0], mlp_ref(l1, l2, x)),
            "")


# Each variant's division of the per-tensor quantization (a true division,
# never a multiply by 1/scale), by architecture.
DIVIDE = {"x86_64": r"divps\s", "aarch64": r"\bfdiv\s+v\d+\.4s"}


def test_asm(t, rng):
    """On every variant (those that do not run here too): the compiled
    layers call no reference function, the per-tensor quantization is there
    with its vector division, and the kernels multiply with the variant's
    instruction (test_attn_kernels.MULTIPLY)."""
    from test_attn_kernels import MULTIPLY
    d = q8test.tmpdir()
    path = os.path.join(d, "m.onnx")
    onnx.save(mlp_model(Layer(rng, 40, 24, "u8", True, True, False),
                        Layer(rng, 24, 9, "s8", False, True, False), 40), path)
    for v in q8test.list_targets(Q8C):
        ll, asm = os.path.join(d, "m.ll"), os.path.join(d, "m.s")
        r1 = q8test.run(Q8C, path, "--batch", 3, "--target=" + v.name, "--emit=llvm", "-o", ll,
                        check=False)
        r2 = q8test.run(Q8C, path, "--batch", 3, "--target=" + v.name, "--emit=asm", "-o", asm,
                        check=False)
        if not t.check("asm %s: compiles" % v.name, r1.returncode == 0 and r2.returncode == 0,
                       r1.stderr + r2.stderr):
            continue
        text = open(ll).read()
        t.check("asm %s: no reference call, the per-tensor quantization emitted" % v.name,
                "@q8_ref_qlinear_dyn" not in text and text.count("q8_quantize_tensor_dyn") >= 2,
                "")
        text = open(asm).read()
        t.check("asm %s: divides with /%s/, multiplies with /%s/" % (
            v.name, DIVIDE[v.arch], MULTIPLY[v.name]),
            re.search(DIVIDE[v.arch], text) is not None and
            re.search(MULTIPLY[v.name], text) is not None, "")


# ---- 2. the reference GPT-2 through bench/peers/onnx_dynamic_int8.py ----

def test_gpt2(t, chk, figures):
    try:
        import torch
        import test_onnx_reference as ref_t
    except ImportError:
        t.skip("gpt2", "python3-torch is not installed")
        return
    sys.path.insert(0, os.path.join(ROOT, "bench", "peers"))
    import onnx_dynamic_int8 as rw
    gen = ref_t.load_gen()
    d = q8test.tmpdir()
    r = q8test.run(sys.executable, ref_t.GEN, "gpt2", "tiny", d, check=False, timeout=1800)
    if not t.check("gpt2: gen.py writes the model", r.returncode == 0, r.stderr):
        return
    import json
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    c, full = man["config"], man["models"]["full"]
    ref_f = np.load(os.path.join(d, full["outputs"]["logits"]))
    ids = np.load(os.path.join(d, full["inputs"]["ids"])).astype(np.int64)
    feeds = {"ids": os.path.join(d, "ids64.npy")}
    np.save(feeds["ids"], ids)
    fl = os.path.join(d, "gpt2.onnx")
    ref_t.export(gen, "gpt2", c, fl, 17)
    model = onnx.load(fl)
    # gen.py's weights are captured tensors: the export holds them as
    # Constant nodes, which the rewrite (initializers only) would pass by.
    keep = []
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute[0].name == "value" and \
                len(n.attribute[0].t.dims) == 2:
            tp = onnx.TensorProto()
            tp.CopyFrom(n.attribute[0].t)
            tp.name = n.output[0]
            model.graph.initializer.append(tp)
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    orig = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    mm = [(n.name or n.output[0], n.input[1]) for n in model.graph.node
          if n.op_type == "MatMul" and n.input[1] in orig and orig[n.input[1]].ndim == 2]
    count = rw.rewrite(model)
    qpath = os.path.join(d, "gpt2.dyn.onnx")
    onnx.save(model, qpath)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # The weight each rewritten MatMul had, as the bytes of B [K, N] -> (Bq, Bs).
    table = {np.ascontiguousarray(orig[b], F32).tobytes(): (inits[p + "_q_B"], inits[p + "_q_Bs"])
             for p, b in mm}
    dim = ("--dim", "sequence=%d" % c["T"])
    ir = q8test.run(Q8C, qpath, *dim, "--stop-after=verify").stdout
    t.check("gpt2: %d MatMuls rewritten, as many qlinear_dyn {granularity = tensor}" % count,
            count > 0 and ir.count("granularity = tensor") == count, "%d in the IR" %
            ir.count("granularity = tensor"))

    # numpy-ONNX: PyTorch's float ops, each rewritten MatMul by ONNX's
    # integer arithmetic on the model's own Bq, Bs.
    linear = torch.nn.functional.linear

    def dyn_linear(x, w, b=None):
        hit = table.get(np.ascontiguousarray(w.detach().numpy().T, F32).tobytes())
        if hit is None:
            return linear(x, w, b)
        y = dyn_layer(x.detach().numpy(), hit[0], 0, hit[1], None)
        y = torch.from_numpy(y)
        return y + b if b is not None else y
    w = gen.gpt2_weights(0, c)
    gen.F.linear = dyn_linear
    try:
        with torch.no_grad():
            want = gen.gpt2_torch(w, c, torch.from_numpy(ids))[0].numpy()
    finally:
        gen.F.linear = linear
    got = os.path.join(d, "y.npy")
    q8test.run(Q8C, "run", qpath, *dim, "-i", "ids=" + feeds["ids"], "-o", "logits=" + got)
    y = np.load(got)
    db = q8test.sqnr_db(want, y)
    same = np.mean(y == want)
    t.check("gpt2: q8c's logits equal numpy-ONNX's within float rounding (SQNR >= 60 dB)",
            db >= 60, "%.1f dB" % db)
    figures.append("figure gpt2 rewritten: SQNR vs numpy-ONNX %.1f dB (%.1f%% of logits "
                   "identical); vs PyTorch float %.2f dB, numpy-ONNX vs PyTorch float %.2f dB"
                   % (db, 100 * same, q8test.sqnr_db(ref_f, y), q8test.sqnr_db(ref_f, want)))
    # Compiled: attention's float matmuls become qmatmul_dyn too (--dynamic,
    # the default without --calib); that IR's interpreter and its .so agree
    # byte for byte.
    qir = os.path.join(d, "gpt2.dyn.ir")
    q8test.run(Q8C, qpath, *dim, "--dynamic", "-o", qir)
    chk.run("gpt2 rewritten", qir, {"ids": feeds["ids"]}, ("logits",), ids.shape[0])


def main():
    t = q8test.Tally()
    if onnx is None:
        t.skip("onnx", "python3-onnx is not installed")
        return t.finish()
    rng = np.random.default_rng(14)
    chk = Check(t)
    test_mlps(t, chk, rng)
    test_import(t, rng)
    test_asm(t, rng)
    figures = []
    test_ort(t, rng, figures)
    test_gpt2(t, chk, figures)
    for f in figures:
        print(f)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
