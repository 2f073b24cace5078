"""test_onnx_reference: the reference transformers of examples/transformers
(gen.py's GPT-2-, BERT- and LLaMA-style models, tiny), exported by PyTorch
to ONNX, against the hand-written .ir gen.py writes for the same weights
(issue 14's "same accuracy as their hand-written .ir").

Usage: python3 tests/py/test_onnx_reference.py /path/to/q8c [gpt2|bert|llama ...]

For each architecture gen.py writes the model, its calibration samples, a
held-out input and PyTorch's float logits for it (ref.logits.npy). gen.py's
functional PyTorch reference (gpt2_torch, bert_torch, llama_torch) is wrapped
in an nn.Module and exported with torch.onnx.export with batch and sequence
axes dynamic, at opsets 14 and 17: the causal mask is
masked_fill(ones(Q, K).triu(K - Q + 1), -inf), and torch 1.13 exports triu
only from opset 14 (Trilu); at 13 the export itself fails. The inputs keep
gen.py's names (ids, int64; BERT's mask, f32 as gen.py's reference takes it),
so gen.py's calibration samples feed the ONNX model too (ids widened to
int64). Then, with `--dim sequence=T`:

  * the float interpreter (`q8c run model.onnx`) is within 1e-5 relative of
    PyTorch's logits;
  * static (--calib, gen.py's samples) and dynamic (--dynamic) int8: the
    output SQNR against PyTorch on the held-out input of the .onnx path is
    within 0.5 dB of the hand-written .ir's compiled the same way, and in
    fact identical to it bit for bit: the importer maps the export to the
    graph gen.py writes by hand (the figures are printed);
  * the compiled .so of the ONNX model equals its own integer interpreter
    bit for bit on every x86 variant this CPU runs.

Needs torch and onnx; without them it skips.
"""
import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

try:
    import onnx  # noqa: F401  (torch.onnx.export needs it)
    import torch
except ImportError:  # pragma: no cover
    torch = None

GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples",
                   "transformers", "gen.py")
OPSETS = (14, 17)
FLOAT_REL = 1e-5
SQNR_TOL = 0.5  # dB


def load_gen():
    spec = importlib.util.spec_from_file_location("q8c_gen", GEN)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def export(gen, arch, c, path, opset):
    """gen.py's PyTorch reference for seed 0 (the weights gen.py wrote) as
    ONNX: inputs ids (int64) [and mask (f32)], output logits."""
    w = {"gpt2": gen.gpt2_weights, "bert": gen.bert_weights,
         "llama": gen.llama_weights}[arch](0, c)

    class Ref(torch.nn.Module):
        def forward(self, ids, mask=None):
            if arch == "bert":
                return gen.bert_torch(w, c, ids, mask)
            return (gen.gpt2_torch if arch == "gpt2" else gen.llama_torch)(w, c, ids)[0]

    ids = torch.zeros(2, c["T"], dtype=torch.long)
    names = ["ids", "mask"] if arch == "bert" else ["ids"]
    args = (ids, torch.ones(2, c["T"])) if arch == "bert" else (ids,)
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn["logits"] = {0: "batch"} if arch == "bert" else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on gen.py's constants
        torch.onnx.export(Ref(), args, path, opset_version=opset, input_names=names,
                          output_names=["logits"], dynamic_axes=dyn)


def run(q8c, src, feeds, out, *extra, env=None):
    args = [a for n, f in feeds.items() for a in ("-i", f"{n}={f}")]
    r = subprocess.run([q8c, "run", str(src), *map(str, extra), *args, "-o", f"logits={out}"],
                       capture_output=True, text=True, env=env, timeout=600)
    return np.load(out) if r.returncode == 0 else r


def test_arch(q8c, t, gen, arch, runs, figures):
    d = q8test.tmpdir()
    r = q8test.run(sys.executable, GEN, arch, "tiny", d, check=False, timeout=1800)
    if not t.check(f"{arch}: gen.py writes the model", r.returncode == 0, r.stderr):
        return
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    c = man["config"]
    full = man["models"]["full"]
    ir = os.path.join(d, full["ir"])
    ref = np.load(os.path.join(d, full["outputs"]["logits"]))
    batch = ref.shape[0]
    dim = ["--dim", "sequence=%d" % c["T"]]

    # The same held-out input and calibration samples, ids as int64.
    feeds_ir = {n: os.path.join(d, f) for n, f in full["inputs"].items()}
    feeds_onnx = {}
    for n, f in feeds_ir.items():
        v = np.load(f)
        p = os.path.join(d, "onnx_in.%s.npy" % n)
        np.save(p, v.astype(np.int64) if n == "ids" else v)
        feeds_onnx[n] = p
    calib_ir = os.path.join(d, full["calib"])
    if calib_ir.endswith(".npy"):
        calib_onnx = os.path.join(d, "onnx_calib.npy")
        np.save(calib_onnx, np.load(calib_ir).astype(np.int64))
    else:
        calib_onnx = os.path.join(d, "onnx_calib.safetensors")
        cal = q8test.read_safetensors(calib_ir)
        q8test.write_safetensors(calib_onnx, {n: v.astype(np.int64) if n == "ids" else v
                                              for n, v in cal.items()})

    # The hand-written .ir, compiled each way once.
    schemes = (("static", ["--calib"]), ("dynamic", ["--dynamic"]))
    ir_db = {}
    ir_q = {}
    for scheme, args in schemes:
        qir = os.path.join(d, "ir_%s.ir" % scheme)
        q8test.run(q8c, ir, *args, *([calib_ir] if scheme == "static" else []), "-o", qir)
        y = run(q8c, qir, feeds_ir, os.path.join(d, "y_ir_%s.npy" % scheme))
        if not t.check(f"{arch} .ir {scheme} runs", isinstance(y, np.ndarray),
                       getattr(y, "stderr", "")):
            return
        ir_db[scheme] = q8test.sqnr_db(ref, y)
        ir_q[scheme] = y

    for opset in OPSETS:
        tag = f"{arch} opset {opset}"
        model = os.path.join(d, "%s%d.onnx" % (arch, opset))
        export(gen, arch, c, model, opset)
        y = run(q8c, model, feeds_onnx, os.path.join(d, "y_f%d.npy" % opset), *dim)
        if not t.check(f"{tag}: float runs", isinstance(y, np.ndarray), getattr(y, "stderr", "")):
            continue
        rel = float(np.max(np.abs(y.astype(np.float64) - ref)) / np.max(np.abs(ref)))
        t.record(f"{tag}: float interpreter within {FLOAT_REL:g} relative of PyTorch",
                 rel <= FLOAT_REL, f"max relative error {rel:.2e}")
        for scheme, args in schemes:
            qir = os.path.join(d, "onnx%d_%s.ir" % (opset, scheme))
            q8test.run(q8c, model, *dim, *args, *([calib_onnx] if scheme == "static" else []),
                       "-o", qir)
            yq = run(q8c, qir, feeds_onnx, os.path.join(d, "y_q%d_%s.npy" % (opset, scheme)))
            if not t.check(f"{tag} {scheme}: the quantized IR runs", isinstance(yq, np.ndarray),
                           getattr(yq, "stderr", "")):
                continue
            db = q8test.sqnr_db(ref, yq)
            same = np.array_equal(yq, ir_q[scheme])
            t.record(f"{tag} {scheme} int8: SQNR vs PyTorch within {SQNR_TOL} dB of the .ir's",
                     abs(db - ir_db[scheme]) <= SQNR_TOL,
                     ".onnx %.2f dB, .ir %.2f dB%s" % (db, ir_db[scheme],
                                                       ", outputs identical" if same else ""))
            t.check(f"{tag} {scheme} int8: output identical to the .ir's (the same graph)",
                    same, "max |diff| %g" % float(np.max(np.abs(yq - ir_q[scheme]))))
            figures.append("figure %s opset %d %s: .onnx %.2f dB, .ir %.2f dB, %s; float rel "
                           "err %.2e" % (arch, opset, scheme, db, ir_db[scheme],
                                         "identical" if same else "differ", rel))
            so = os.path.join(d, "onnx%d_%s.so" % (opset, scheme))
            q8test.run(q8c, qir, "--batch", batch, "--target=" + ",".join(runs), "-o", so)
            for isa in runs:
                env = dict(os.environ, Q8_ISA=isa)
                ys = run(q8c, so, feeds_onnx, os.path.join(d, "y_s%d_%s_%s.npy" % (
                    opset, scheme, isa)), env=env)
                ok = isinstance(ys, np.ndarray) and ys.dtype == yq.dtype and \
                    ys.shape == yq.shape and ys.tobytes() == yq.tobytes()
                t.record(f"{tag} {scheme} .so {isa}: bit-exact with the integer interpreter", ok,
                         getattr(ys, "stderr", "") if not isinstance(ys, np.ndarray) else
                         "" if ok else "max |diff| %g" % float(np.max(np.abs(ys - yq))))


def main():
    q8c = os.path.abspath(sys.argv[1])
    t = q8test.Tally()
    if torch is None:
        t.skip("reference transformers from ONNX", "python3-torch or python3-onnx is not installed")
        return 0
    only = sys.argv[2:] or ["gpt2", "bert", "llama"]
    runs = [v.name for v in q8test.list_targets(q8c) if v.arch == "x86_64" and v.runs_here]
    gen = load_gen()
    for arch in only:
        figures = []
        test_arch(q8c, t, gen, arch, runs, figures)
        for f in figures:
            print(f, flush=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
