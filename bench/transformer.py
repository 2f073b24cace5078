#!/usr/bin/python3
"""q8c on the reference transformers beside ONNX Runtime and PyTorch, in one
interleaved run (issue 15's peer benchmark; the layer-level comparison with
oneDNN is bench/layerbench.c).

  /usr/bin/python3 bench/transformer.py [--arch gpt2,bert,llama] [--size small]
        [--rounds 7] [--runs 10] [--calib 8] [--q8c build/q8c] [--work DIR]
        [--json FILE]

For each architecture it generates the reference model (examples/
transformers/gen.py: the .ir, its weights, calibration samples and a held-out
input of batch 1), then builds every engine's form of it:

  q8c static     `q8c ARCH.ir --calib` -> .so for this CPU, run by `q8c bench`
  q8c dynamic    `q8c ARCH.ir --dynamic` -> .so
  q8c ... 7-bit  the same two with --reduce-range (7-bit weights: AVX2
                 without VNNI then runs every GEMM in its vpmaddubsw form;
                 docs/quantization.md, "Reduced range")
  ORT fp32       the PyTorch model exported with torch.onnx.export (opset 14),
                 run by npm's onnxruntime-node (bench/peers/ort_bench.js), one
                 intra-op thread, all graph optimizations
  ORT int8       the same file with its MatMuls rewritten as quantize_dynamic
                 does (bench/peers/onnx_dynamic_int8.py)
  PyTorch fp32   gen.py's PyTorch reference, torch.set_num_threads(1)
  PyTorch int8   the same with its linear layers replaced by
                 torch.ao.quantization.quantize_dynamic's int8 Linear

Timing: ROUNDS rounds; in each, every engine runs RUNS timed calls after a
warm-up and the round's median per engine is kept; the table gives the median
over rounds and each engine's time relative to q8c static (how many times
faster q8c static is). Interleaving the engines round by round spreads a
shared machine's noise over all of them alike. One thread everywhere.

Peers are benchmark-only: scripts/bench-transformer.sh installs
onnxruntime-node under build/peers (npm, --ignore-scripts: the package
carries its CPU binaries) and runs this; q8c never links or loads them.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

# One thread for PyTorch's BLAS too (OpenBLAS, which the bench script
# installs: Debian's default reference BLAS would make PyTorch's fp32 25x
# slower than it is for its users).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
from q8test import read_safetensors  # noqa: E402


def load_gen():
    path = os.path.join(ROOT, "examples", "transformers", "gen.py")
    spec = importlib.util.spec_from_file_location("q8c_gen", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("bench/transformer.py: %s failed (%d):\n%s%s" %
                 (" ".join(cmd), r.returncode, r.stdout[-2000:], r.stderr[-4000:]))
    return r.stdout


class TorchModel(torch.nn.Module):
    """gen.py's functional PyTorch reference with every F.linear routed
    through an nn.Linear holding the same weight, so that quantize_dynamic
    can replace the layers."""

    def __init__(self, gen, arch, w, c):
        super().__init__()
        self.gen, self.arch, self.w, self.c = gen, arch, w, c
        self.lins = torch.nn.ModuleDict()
        self.by_ptr = {}
        for name, v in w.items():
            if v.ndim == 2 and v.dtype == np.float32:
                t = torch.from_numpy(v)
                lin = torch.nn.Linear(v.shape[1], v.shape[0], bias=False)
                lin.weight = torch.nn.Parameter(t, requires_grad=False)
                key = name.replace(".", "_")
                self.lins[key] = lin
                self.by_ptr[t.data_ptr()] = key

    def linear(self, x, weight, bias=None):
        key = self.by_ptr.get(weight.data_ptr())
        if key is None:
            return torch.nn.functional.linear(x, weight, bias)
        y = self.lins[key](x)
        return y if bias is None else y + bias

    def forward(self, *inputs):
        gen = self.gen
        real_F = gen.F

        class RoutedF:
            def __getattr__(_, name):
                return self.linear if name == "linear" else getattr(real_F, name)
        gen.F = RoutedF()
        try:
            if self.arch == "bert":
                return gen.bert_torch(self.w, self.c, inputs[0].long(), inputs[1])
            fwd = gen.gpt2_torch if self.arch == "gpt2" else gen.llama_torch
            return fwd(self.w, self.c, inputs[0].long())[0]
        finally:
            gen.F = real_F


def torch_timer(model, inputs, runs):
    def sample():
        with torch.no_grad():
            model(*inputs)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                model(*inputs)
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    return sample


def q8c_timer(q8c, so, feeds, runs):
    args = [q8c, "bench", so, "--json", "--runs", str(runs), "--warmup", "2"]
    for name, path in feeds.items():
        args += ["-i", "%s=%s" % (name, path)]

    def sample():
        return json.loads(run(args))["latency_ms"]["median"]
    return sample


def ort_timer(onnx_path, feeds, runs, node_path):
    args = ["node", os.path.join(PEERS, "ort_bench.js"), onnx_path, str(runs), "2"]
    args += ["%s=%s" % (n, p) for n, p in feeds.items()]
    env = dict(os.environ, NODE_PATH=node_path)

    def sample():
        return statistics.median(json.loads(run(args, env=env).splitlines()[-1])["times_ms"])
    return sample


def prepare(a, gen, arch, work):
    d = os.path.join(work, arch)
    run([sys.executable, os.path.join(ROOT, "examples", "transformers", "gen.py"), arch, a.size,
         d, "--batch", "1", "--calib", str(a.calib)])
    man = json.load(open(os.path.join(d, "manifest.json")))
    full = man["models"]["full"]
    c = man["config"]
    ir = os.path.join(d, full["ir"])
    feeds = {n: os.path.join(d, f) for n, f in full["inputs"].items()}
    t0 = time.perf_counter()
    run([a.q8c, "-q", ir, "--calib", os.path.join(d, full["calib"]), "-o",
         os.path.join(d, "static.so")])
    static_s = time.perf_counter() - t0
    run([a.q8c, "-q", ir, "--dynamic", "-o", os.path.join(d, "dynamic.so")])
    run([a.q8c, "-q", ir, "--calib", os.path.join(d, full["calib"]), "--reduce-range", "-o",
         os.path.join(d, "static7.so")])
    run([a.q8c, "-q", ir, "--dynamic", "--reduce-range", "-o", os.path.join(d, "dynamic7.so")])

    w = read_safetensors(os.path.join(d, arch + ".safetensors"))
    model = TorchModel(gen, arch, w, c).eval()
    inputs = [torch.from_numpy(np.load(feeds[n])) for n in full["inputs"]]
    onnx32 = os.path.join(d, arch + ".onnx")
    names = list(full["inputs"])
    with torch.no_grad():
        torch.onnx.export(model, tuple(i.long() if i.dtype != torch.float32 else i
                                       for i in inputs), onnx32,
                          input_names=names, output_names=["logits"], opset_version=14)
    onnx8 = os.path.join(d, arch + ".int8.onnx")
    run([sys.executable, os.path.join(PEERS, "onnx_dynamic_int8.py"), onnx32, onnx8])
    # ONNX Runtime takes the ids as int64 (torch.onnx.export's Long inputs).
    ort_feeds = {}
    for n, p in feeds.items():
        v = np.load(p)
        if v.dtype != np.float32:
            v = v.astype(np.int64)
        ort_feeds[n] = os.path.join(d, "ort." + n + ".npy")
        np.save(ort_feeds[n], v)
    qmodel = torch.ao.quantization.quantize_dynamic(
        TorchModel(gen, arch, w, c).eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    engines = [
        ("q8c static", q8c_timer(a.q8c, os.path.join(d, "static.so"), feeds, a.runs)),
        ("q8c dynamic", q8c_timer(a.q8c, os.path.join(d, "dynamic.so"), feeds, a.runs)),
        ("q8c static 7-bit", q8c_timer(a.q8c, os.path.join(d, "static7.so"), feeds, a.runs)),
        ("q8c dynamic 7-bit", q8c_timer(a.q8c, os.path.join(d, "dynamic7.so"), feeds, a.runs)),
        ("ORT fp32", ort_timer(onnx32, ort_feeds, a.runs, a.node_path)),
        ("ORT int8", ort_timer(onnx8, ort_feeds, a.runs, a.node_path)),
        ("PyTorch fp32", torch_timer(model, inputs, a.runs)),
        ("PyTorch int8", torch_timer(qmodel, inputs, a.runs)),
    ]
    return engines, c, static_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gpt2,bert,llama")
    ap.add_argument("--size", default="small")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--calib", type=int, default=8)
    ap.add_argument("--q8c", default=os.path.join(ROOT, "build", "q8c"))
    ap.add_argument("--node-path", default=os.path.join(ROOT, "build", "peers", "node_modules"))
    ap.add_argument("--work")
    ap.add_argument("--json", default="transformer-bench.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the ONNX export's tracer warnings
    gen = load_gen()
    work = a.work or tempfile.mkdtemp(prefix="q8c-tbench-")
    results = {}
    for arch in a.arch.split(","):
        print("%s (%s): preparing in %s" % (arch, a.size, work), file=sys.stderr)
        engines, c, static_s = prepare(a, gen, arch, work)
        samples = {name: [] for name, _ in engines}
        for r in range(a.rounds):
            for name, sample in engines:
                samples[name].append(sample())
            print("  round %d/%d done" % (r + 1, a.rounds), file=sys.stderr)
        med = {n: statistics.median(v) for n, v in samples.items()}
        base = med["q8c static"]
        print("\n%s, %s: d %d, %d heads, %d layers, T %d, vocab %d; batch 1, one thread; "
              "q8c static compile %.1f s" % (arch, a.size, c["d"], c["heads"], c["layers"],
                                              c["T"], c["vocab"], static_s))
        print("| engine | median ms | vs q8c static |")
        print("|---|---:|---:|")
        for n, _ in engines:
            print("| %s | %.2f | %.2fx |" % (n, med[n], med[n] / base))
        # Issue 15's targets, stated for every architecture (the issue sets
        # them on GPT-2-small): q8c >= 2x ORT int8 and >= 4x PyTorch fp32,
        # static and dynamic, and dynamic within 1.25x of static.
        for scheme in ("q8c static", "q8c dynamic", "q8c static 7-bit", "q8c dynamic 7-bit"):
            for peer, want in (("ORT int8", 2.0), ("PyTorch fp32", 4.0)):
                got = med[peer] / med[scheme]
                print("target: %s %.2fx faster than %s (want >= %.1fx): %s" %
                      (scheme, got, peer, want, "met" if got >= want else "MISSED"))
        got = med["q8c dynamic"] / base
        print("target: q8c dynamic at %.2fx q8c static (want <= 1.25x): %s" %
              (got, "met" if got <= 1.25 else "MISSED"))
        results[arch] = {"size": a.size, "config": c, "median_ms": med, "rounds": samples,
                         "q8c_static_compile_s": static_s}
    with open(a.json, "w") as f:
        json.dump(results, f, indent=1)
    print("\nwrote %s" % a.json)


if __name__ == "__main__":
    main()
