"""test_onnx_transformers: GPT-2-, BERT- and LLaMA-style models exported by
PyTorch, imported from ONNX (docs/import.md, "Transformers").

Usage: python3 tests/py/test_onnx_transformers.py /path/to/q8c

The models are the PyTorch modules of tests/py/hf_like.py, written to match
Hugging Face's (transformers itself is not installed here). Each is exported
with torch.onnx.export at opsets 13 and 17 with dynamic batch and sequence
axes (int64 input_ids; an int64 attention_mask for GPT-2 and BERT), then:

  * without --dim, the import fails naming the sequence dim and how to bind it;
  * `q8c import --dim sequence=8` writes IR whose ops are the ones expected
    (MatMul + Add fused into linear, GPT-2's Conv1D (Reshape to [-1, D], Gemm,
    Reshape back) a linear on [?, S, D], no matmul by a constant; the causal mask
    as softmax {causal = 1}; gelu {approximate = tanh}; rmsnorm; silu), and
    which parses back;
  * the float interpreter matches PyTorch within 1e-5 relative (batch 3, one
    row padded in the attention mask);
  * static int8 (--calib, a safetensors file of token ids and masks) and
    dynamic int8 (--dynamic) compile to a .so that runs and equals the
    quantized IR bit for bit, with the output SQNR against PyTorch above a
    floor (the measured figures are printed).

Needs torch and onnx; without them it skips.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

try:
    import onnx
    import torch
    import hf_like
except ImportError:  # pragma: no cover
    torch = None

F32 = np.float32
SEQ, VOCAB, BATCH = 8, 64, 3

# name, class, inputs, outputs, linear layers, ops the IR must have.
MODELS = [
    ("gpt2", "GPT2LMHeadModel", ["input_ids", "attention_mask"], ["logits"], 9,
     ["softmax %h.0_attn_Add_1_output_0 {causal = 1}", "{approximate = tanh}", "= layernorm",
      "= gather @wte.weight, %input_ids", "input %attention_mask : f32[?, 8]"]),
    ("bert", "BertModel", ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"],
     13, ["= gelu %", "= tanh %", "= layernorm", "= sub ", "input %attention_mask : f32[?, 8]"]),
    ("llama", "LlamaForCausalLM", ["input_ids"], ["logits"], 15,
     ["{causal = 1}", "= rmsnorm", "= silu", "= concat", "= slice"]),
]

# Output SQNR floors against PyTorch, in dB (the measured figures are
# printed; these catch a broken path, not a 1 dB drift).
FLOOR = {"static": 28.0, "dynamic": 32.0}


def export(name, cls, inputs, outputs, opset, work):
    torch.manual_seed({"gpt2": 1, "bert": 2, "llama": 3}[name])
    model = getattr(hf_like, cls)().eval()
    ids = torch.randint(0, VOCAB, (2, SEQ))
    mask = torch.ones(2, SEQ, dtype=torch.long)
    args = (ids, mask) if len(inputs) == 2 else (ids,)
    dyn = {n: {0: "batch", 1: "sequence"} for n in inputs}
    for o in outputs:
        dyn[o] = {0: "batch"} if o == "pooler_output" else {0: "batch", 1: "sequence"}
    path = os.path.join(work, f"{name}{opset}.onnx")
    torch.onnx.export(model, args, path, opset_version=opset, input_names=inputs,
                      output_names=outputs, dynamic_axes=dyn)
    return model, path


def feeds(rng, n, inputs):
    ids = rng.integers(0, VOCAB, (n, SEQ)).astype(np.int64)
    mask = np.ones((n, SEQ), np.int64)
    mask[0, SEQ - 3:] = 0  # one row padded
    if n > 4:
        mask[rng.integers(1, n, n // 4), SEQ - 2:] = 0
    return {"input_ids": ids, "attention_mask": mask} if len(inputs) == 2 else {"input_ids": ids}


def torch_ref(model, f, outputs):
    with torch.no_grad():
        r = model(*[torch.from_numpy(v) for v in f.values()])
    r = r if isinstance(r, tuple) else (r,)
    return {o: v.numpy() for o, v in zip(outputs, r)}


def run(q8c, model, f, outputs, work, tag, *extra):
    args = []
    for k, v in f.items():
        p = os.path.join(work, f"{tag}.{k}.npy")
        # A mask reaches only Casts to FLOAT, so q8c reads it as f32.
        np.save(p, v.astype(F32) if k == "attention_mask" else v)
        args += ["-i", f"{k}={p}"]
    outs = {o: os.path.join(work, f"{tag}.{o}.out.npy") for o in outputs}
    for o, p in outs.items():
        args += ["-o", f"{o}={p}"]
    q8test.run(q8c, "run", model, *extra, *args)
    return {o: np.load(p) for o, p in outs.items()}


def rel_err(ref, y):
    return max(float(np.max(np.abs(y[o] - ref[o])) / np.max(np.abs(ref[o]))) for o in ref)


def sqnr(ref, y):
    return min(q8test.sqnr_db(ref[o], y[o]) for o in ref)


def test_model(q8c, t, spec, opset):
    name, cls, inputs, outputs, nlinear, must = spec
    tag = f"{name} opset {opset}"
    work = q8test.tmpdir()
    model, path = export(name, cls, inputs, outputs, opset, work)

    r = q8test.run(q8c, path, "--stop-after=verify", check=False)
    t.check(f"{tag}: an unbound sequence dim is an error naming it",
            r.returncode == 1 and "dimension 1 is symbolic ('sequence'); bind it with --dim "
            "sequence=N" in r.stderr, r.stderr)

    ir_path = os.path.join(work, f"{name}.ir")
    q8test.run(q8c, "import", path, "--dim", "sequence=8", "-o", ir_path)
    ir = open(ir_path).read()
    consts = [ln for ln in ir.splitlines() if "= matmul " in ln and ", @" in ln]
    t.check(f"{tag}: {nlinear} linear layers (MatMul + Add fused, Conv1D's Gemm on rows), no "
            "matmul by a constant",
            ir.count("= linear ") == nlinear and not consts,
            f"{ir.count('= linear ')} linear; {consts[:2]}")
    missing = [m for m in must if m not in ir]
    t.check(f"{tag}: the IR has the mapped ops", not missing, f"missing {missing}\n{ir}")
    t.check(f"{tag}: ids are i64", "input %input_ids : i64[?, 8]" in ir, ir[:400])

    rng = np.random.default_rng(opset)
    f = feeds(rng, BATCH, inputs)
    ref = torch_ref(model, f, outputs)
    y = run(q8c, path, f, outputs, work, "onnx", "--dim", "sequence=8")
    rel = rel_err(ref, y)
    t.record(f"{tag}: float interpreter within 1e-5 relative of PyTorch (batch {BATCH})",
             rel < 1e-5, f"max relative error {rel:.2e}")
    yi = run(q8c, ir_path, f, outputs, work, "ir")
    t.check(f"{tag}: the imported .ir runs the same", all(np.array_equal(yi[o], y[o]) for o in y))

    calib = os.path.join(work, "calib.safetensors")
    cf = feeds(rng, 32, inputs)
    q8test.write_safetensors(calib, {k: (v.astype(F32) if k == "attention_mask" else v)
                                     for k, v in cf.items()})
    for scheme, args in (("static", ["--calib", calib]), ("dynamic", ["--dynamic"])):
        qir = os.path.join(work, f"{scheme}.ir")
        so = os.path.join(work, f"{scheme}.so")
        q8test.run(q8c, path, "--dim", "sequence=8", *args, "-o", qir)
        q8test.run(q8c, path, "--dim", "sequence=8", *args, "--batch", BATCH, "--target=generic",
                   "-o", so)
        text = open(qir).read()
        yq = run(q8c, qir, f, outputs, work, scheme)
        ys = run(q8c, so, f, outputs, work, scheme + ".so")
        db = sqnr(ref, yq)
        qop, qmm = ("qgemm", "qmatmul") if scheme == "static" else ("qlinear_dyn", "qmatmul_dyn")
        t.record(f"{tag}: {scheme} int8: every linear quantized ({qop}), attention's matmuls "
                 f"{qmm}, SQNR vs PyTorch above {FLOOR[scheme]:.0f} dB",
                 db > FLOOR[scheme] and "= linear " not in text and "= matmul " not in text
                 and text.count(f"= {qop} ") == nlinear and text.count(f"= {qmm} ") == 4,
                 f"SQNR {db:.2f} dB")
        t.check(f"{tag}: {scheme} int8 .so equals the quantized IR",
                all(np.array_equal(ys[o], yq[o]) for o in yq),
                f"max diff {max(float(np.max(np.abs(ys[o] - yq[o]))) for o in yq):g}")


def test_small_ops(q8c, t):
    """Split (attribute form at opset 11, input form at 13), Neg, Sigmoid,
    Tanh, Concat, Slice, Transpose, a matmul of activations, the causal
    Where and Softmax, built with onnx.helper and checked against numpy."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 6)).astype(F32)
    xd = x.astype(np.float64)
    a, b = xd[..., :2], xd[..., 2:]
    c = np.concatenate([-a, 1 / (1 + np.exp(-b))], axis=2)[..., 1:]
    s = c @ c.transpose(0, 2, 1)
    s = np.where(np.tril(np.ones((4, 4), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    ref = (p / p.sum(-1, keepdims=True)) @ np.tanh(b)
    for opset in (11, 13):
        work = q8test.tmpdir()
        i64 = lambda v, n: numpy_helper.from_array(np.array(v, np.int64), n)  # noqa: E731
        inits = [i64([1], "st"), i64([6], "en"), i64([2], "ax"),
                 numpy_helper.from_array(np.tril(np.ones((1, 4, 4), bool)), "causal"),
                 numpy_helper.from_array(np.array(-3.4e38, F32), "minf")]
        if opset >= 13:
            inits.append(i64([2, 4], "sizes"))
            split = helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=2)
        else:
            split = helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=2, split=[2, 4])
        nodes = [split,
                 helper.make_node("Neg", ["a"], ["na"], name="neg"),
                 helper.make_node("Sigmoid", ["b"], ["sb"], name="sig"),
                 helper.make_node("Tanh", ["b"], ["tb"], name="tanh"),
                 helper.make_node("Concat", ["na", "sb"], ["c"], name="cat", axis=2),
                 helper.make_node("Slice", ["c", "st", "en", "ax"], ["cs"], name="slice"),
                 helper.make_node("Transpose", ["cs"], ["ct"], name="tr", perm=[0, 2, 1]),
                 helper.make_node("MatMul", ["cs", "ct"], ["s"], name="scores"),
                 helper.make_node("Where", ["causal", "s", "minf"], ["w"], name="mask"),
                 helper.make_node("Softmax", ["w"], ["p"], name="sm", axis=2),
                 helper.make_node("MatMul", ["p", "tb"], ["y"], name="pv")]
        g = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4, 4])],
                              initializer=inits)
        path = os.path.join(work, "ops.onnx")
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), path)
        ir = q8test.run(q8c, path, "--stop-after=verify").stdout
        want = ["= slice %x {axis = 2, start = 0, end = 2}", "= sigmoid %b", "= tanh %b",
                "= concat %na, %sb {axis = 2}", "{causal = 1}", "= mul %a, -1"]
        missing = [w for w in want if w not in ir]
        t.check(f"small ops opset {opset}: the IR has them", not missing, f"missing {missing}\n{ir}")
        xi, yo = os.path.join(work, "x.npy"), os.path.join(work, "y.npy")
        np.save(xi, x)
        q8test.run(q8c, "run", path, "-i", xi, "-o", yo)
        y = np.load(yo)
        rel = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        t.check(f"small ops opset {opset}: matches numpy within 1e-5", rel < 1e-5, f"{rel:g}")


def test_dim_option(q8c, t):
    for arg, want in (("seq", "q8c: error: --dim takes NAME=N with N a positive integer, not 'seq'"),
                      ("seq=0", "q8c: error: --dim takes NAME=N with N a positive integer, not "
                                "'seq=0'")):
        r = q8test.run(q8c, "model.onnx", "--dim", arg, check=False)
        t.check(f"--dim {arg}: a usage error", r.returncode == 2 and want in r.stderr, r.stderr)


def main():
    q8c = os.path.abspath(sys.argv[1])
    t = q8test.Tally()
    if torch is None:
        t.skip("transformers from ONNX", "python3-torch or python3-onnx is not installed")
        return 0
    only = [a for a in sys.argv[2:] if not a.startswith("-")]
    if not only:
        test_dim_option(q8c, t)
        test_small_ops(q8c, t)
    for spec in MODELS:
        if only and spec[0] not in only:
            continue
        for opset in (13, 17):
            test_model(q8c, t, spec, opset)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
