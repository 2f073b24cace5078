"""Generate the reference transformers: GPT-2-, BERT- and LLaMA-style models
written in q8c's text IR, with their weights, calibration samples, a held-out
input and PyTorch's float outputs for it.

    /usr/bin/python3 gen.py ARCH SIZE OUTDIR [--seed N] [--calib N] [--batch N]
                            [--ref | --no-ref] [--outlier-gamma G]

ARCH is gpt2, bert or llama; SIZE is tiny or small (table SIZES). OUTDIR
receives:

  ARCH.ir            the full-window model (T tokens in, logits out)
  ARCH_step.ir       gpt2 and llama: the decode step with a KV cache (one
                     token in, past keys/values of P = T - 1 positions in,
                     logits and the present keys/values out)
  ARCH.safetensors   every constant both models use (one file, each model
                     reads the tensors it names)
  calib.npy          calibration samples (gpt2, llama: token ids [N, T];
                     bert: calib.safetensors, ids and mask)
  step_calib.safetensors   the same for ARCH_step.ir: 4 times as many
                     sequences, each giving token P and PyTorch's past K/V
  in.*.npy           a held-out input, one file per input name
  ref.logits.npy     PyTorch's float output for it (with --ref)
  step_in.*.npy      the step model's held-out input: token P of each held-out
                     sequence and PyTorch's keys/values of positions 0..P-1
  manifest.json      which file is which (read by tests/py/test_transformers.py)

--ref runs PyTorch for the reference outputs and for the step's past keys
and values; it is the default for tiny only. This machine's torch and numpy
use the reference BLAS (about 0.4 GFLOP/s here), so one small forward of 128
tokens takes minutes: --no-ref (small's default) writes no ref files and
fills the step's past keys and values, in its inputs and its calibration
samples, with standard-normal stand-ins of the right shape, which is enough
to compile and time the models, not to measure their accuracy.

The models are written as a user would write them in the IR (docs/ir.md,
"A transformer block"); the PyTorch reference in this file is written
independently, the way Hugging Face's modules compute (F.layer_norm, masked
softmax, rotate_half, ...), so agreement checks the IR and q8c, not a copy.

Weights are random (no trained checkpoint can be downloaded here), seeded,
chosen to make quantization behave like a trained model's rather than like
a freshly initialised one's:
  - linear weights normal(0, 1/sqrt(fan_in)), so activations keep unit scale
    through the layers and attention is peaked (a 0.02-std init leaves it
    uniform); the residual-branch output projections are scaled by
    1/sqrt(2 * layers) as GPT-2 does; biases normal(0, 0.02);
  - embeddings normal(0, 0.3) (token), normal(0, 0.1) (position, type);
  - norm gammas 1 + normal(0, 0.05), betas normal(0, 0.02), except two fixed
    "outlier" channels whose gamma is 6 in every norm (--outlier-gamma): the
    few large activation channels trained LLMs have (LLM.int8()), which
    per-tensor int8 activations must cover.
Only Debian's python3 with torch 1.13 and numpy is needed, at build and test
time; q8c never runs this.
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

SIZES = {
    # d: model width, heads, layers, T: window, vocab, ffn: MLP width
    # (llama: the gated MLP's), labels: BERT's classifier classes.
    "tiny": dict(d=64, heads=4, layers=2, T=16, vocab=256, ffn=256, llama_ffn=192, labels=8,
                 calib=32, batch=16),
    "small": dict(d=768, heads=12, layers=12, T=128, vocab=8192, ffn=3072, llama_ffn=2048,
                  labels=8, calib=8, batch=2),
}
OUTLIERS = (5, 37)          # the outlier channels (indices < d for every size)
OUTLIER_GAMMA = 6.0


def write_safetensors(path, tensors):
    # Kept here rather than imported from tests/ so the example stands alone.
    names = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32", np.dtype("<i8"): "I64"}
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def lit(x):
    """A literal operand: the shortest decimal of the f32 value."""
    return repr(float(np.float32(x)))


# ---- weights ----

class Init:
    def __init__(self, seed, cfg):
        self.rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.w = {}
        self.outlier_gamma = OUTLIER_GAMMA

    def normal(self, name, shape, std):
        self.w[name] = (self.rng.standard_normal(shape) * std).astype(np.float32)

    def linear(self, name, n_out, n_in, bias=True, scale=1.0):
        self.normal(name + ".weight", (n_out, n_in), scale / math.sqrt(n_in))
        if bias:
            self.normal(name + ".bias", (n_out,), 0.02)

    def norm(self, name, d, bias=True):
        g = 1 + self.rng.standard_normal(d) * 0.05
        g[list(OUTLIERS)] = self.outlier_gamma
        self.w[name + ".weight"] = g.astype(np.float32)
        if bias:
            self.normal(name + ".bias", (d,), 0.02)


def gpt2_weights(seed, c):
    i = Init(seed, c)
    d, L = c["d"], c["layers"]
    i.normal("wte", (c["vocab"], d), 0.3)
    i.normal("wpe", (c["T"], d), 0.1)
    for l in range(L):
        p = "h.%d." % l
        i.norm(p + "ln_1", d)
        i.linear(p + "attn.c_attn", 3 * d, d)
        i.linear(p + "attn.c_proj", d, d, scale=1 / math.sqrt(2 * L))
        i.norm(p + "ln_2", d)
        i.linear(p + "mlp.c_fc", c["ffn"], d)
        i.linear(p + "mlp.c_proj", d, c["ffn"], scale=1 / math.sqrt(2 * L))
    i.norm("ln_f", d)
    return i.w


def bert_weights(seed, c):
    i = Init(seed, c)
    d, L = c["d"], c["layers"]
    i.normal("embeddings.word_embeddings.weight", (c["vocab"], d), 0.3)
    i.normal("embeddings.position_embeddings.weight", (c["T"], d), 0.1)
    i.normal("embeddings.token_type_embeddings.weight", (2, d), 0.1)
    i.norm("embeddings.LayerNorm", d)
    for l in range(L):
        p = "encoder.layer.%d." % l
        for n in ("query", "key", "value"):
            i.linear(p + "attention.self." + n, d, d)
        i.linear(p + "attention.output.dense", d, d)
        i.norm(p + "attention.output.LayerNorm", d)
        i.linear(p + "intermediate.dense", c["ffn"], d)
        i.linear(p + "output.dense", d, c["ffn"])
        i.norm(p + "output.LayerNorm", d)
    i.linear("pooler.dense", d, d)
    i.linear("classifier", c["labels"], d)
    return i.w


def llama_weights(seed, c):
    i = Init(seed, c)
    d, L = c["d"], c["layers"]
    i.normal("embed_tokens.weight", (c["vocab"], d), 0.3)
    for l in range(L):
        p = "layers.%d." % l
        i.norm(p + "input_layernorm", d, bias=False)
        for n in ("q_proj", "k_proj", "v_proj"):
            i.linear(p + "self_attn." + n, d, d, bias=False)
        i.linear(p + "self_attn.o_proj", d, d, bias=False, scale=1 / math.sqrt(2 * L))
        i.norm(p + "post_attention_layernorm", d, bias=False)
        i.linear(p + "mlp.gate_proj", c["llama_ffn"], d, bias=False)
        i.linear(p + "mlp.up_proj", c["llama_ffn"], d, bias=False)
        i.linear(p + "mlp.down_proj", d, c["llama_ffn"], bias=False, scale=1 / math.sqrt(2 * L))
    i.norm("norm", d, bias=False)
    i.linear("lm_head", c["vocab"], d, bias=False)
    return i.w


def rope_tables(c):
    """HF LLaMA's rotary tables for positions 0..T-1: cos, sin [T, hd]."""
    hd = c["d"] // c["heads"]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
    t = torch.arange(c["T"]).float()
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().numpy(), emb.sin().numpy()


# ---- the PyTorch references (Hugging Face's computations) ----

def T(w, name):
    return torch.from_numpy(w[name])


def heads(x, H):
    """[B, T, D] -> [B, H, T, hd]"""
    B, S, D = x.shape
    return x.view(B, S, H, D // H).transpose(1, 2)


def merge(x):
    B, H, S, hd = x.shape
    return x.transpose(1, 2).reshape(B, S, H * hd)


def attention(q, k, v, causal, add_mask=None):
    """q [B, H, Q, hd], k, v [B, H, K, hd]; causal: query i sees keys
    j <= i + K - Q."""
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if add_mask is not None:
        s = s + add_mask
    if causal:
        Q, K = s.shape[-2], s.shape[-1]
        future = torch.ones(Q, K, dtype=torch.bool).triu(K - Q + 1)
        s = s.masked_fill(future, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def gpt2_torch(w, c, ids, pos0=0, past=None):
    """Logits [B, S, V] and the present (k, v) per layer, [B, H, P+S, hd]."""
    H, L = c["heads"], c["layers"]
    S = ids.shape[1]
    x = F.embedding(ids, T(w, "wte")) + T(w, "wpe")[pos0:pos0 + S]
    present = []
    for l in range(L):
        p = "h.%d." % l
        a = F.layer_norm(x, (c["d"],), T(w, p + "ln_1.weight"), T(w, p + "ln_1.bias"), 1e-5)
        qkv = F.linear(a, T(w, p + "attn.c_attn.weight"), T(w, p + "attn.c_attn.bias"))
        q, k, v = (heads(t, H) for t in qkv.split(c["d"], dim=2))
        if past is not None:
            k = torch.cat((past[l][0], k), dim=2)
            v = torch.cat((past[l][1], v), dim=2)
        present.append((k, v))
        o = merge(attention(q, k, v, causal=True))
        x = x + F.linear(o, T(w, p + "attn.c_proj.weight"), T(w, p + "attn.c_proj.bias"))
        m = F.layer_norm(x, (c["d"],), T(w, p + "ln_2.weight"), T(w, p + "ln_2.bias"), 1e-5)
        m = F.gelu(F.linear(m, T(w, p + "mlp.c_fc.weight"), T(w, p + "mlp.c_fc.bias")),
                   approximate="tanh")
        x = x + F.linear(m, T(w, p + "mlp.c_proj.weight"), T(w, p + "mlp.c_proj.bias"))
    x = F.layer_norm(x, (c["d"],), T(w, "ln_f.weight"), T(w, "ln_f.bias"), 1e-5)
    return F.linear(x, T(w, "wte")), present


def bert_torch(w, c, ids, mask):
    H, L, d = c["heads"], c["layers"], c["d"]
    S = ids.shape[1]
    e = "embeddings."
    x = (F.embedding(ids, T(w, e + "word_embeddings.weight"))
         + T(w, e + "position_embeddings.weight")[:S]
         + T(w, e + "token_type_embeddings.weight")[0])
    x = F.layer_norm(x, (d,), T(w, e + "LayerNorm.weight"), T(w, e + "LayerNorm.bias"), 1e-12)
    ext = (1.0 - mask[:, None, None, :]) * -10000.0
    for l in range(L):
        p = "encoder.layer.%d." % l

        def lin(n, t):
            return F.linear(t, T(w, p + n + ".weight"), T(w, p + n + ".bias"))

        def ln(n, t):
            return F.layer_norm(t, (d,), T(w, p + n + ".weight"), T(w, p + n + ".bias"), 1e-12)
        q, k, v = (heads(lin("attention.self." + n, x), H) for n in ("query", "key", "value"))
        o = merge(attention(q, k, v, causal=False, add_mask=ext))
        x = ln("attention.output.LayerNorm", lin("attention.output.dense", o) + x)
        m = lin("output.dense", F.gelu(lin("intermediate.dense", x)))
        x = ln("output.LayerNorm", m + x)
    pooled = torch.tanh(F.linear(x[:, 0], T(w, "pooler.dense.weight"), T(w, "pooler.dense.bias")))
    return F.linear(pooled, T(w, "classifier.weight"), T(w, "classifier.bias"))


def rms_norm(x, g, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_torch(w, c, ids, pos0=0, past=None):
    H, L = c["heads"], c["layers"]
    S = ids.shape[1]
    cos, sin = (torch.from_numpy(t[pos0:pos0 + S]) for t in rope_tables(c))
    x = F.embedding(ids, T(w, "embed_tokens.weight"))
    present = []
    for l in range(L):
        p = "layers.%d." % l
        a = rms_norm(x, T(w, p + "input_layernorm.weight"))
        q, k, v = (heads(F.linear(a, T(w, p + "self_attn.%s_proj.weight" % n)), H)
                   for n in "qkv")
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat((past[l][0], k), dim=2)
            v = torch.cat((past[l][1], v), dim=2)
        present.append((k, v))
        o = merge(attention(q, k, v, causal=True))
        x = x + F.linear(o, T(w, p + "self_attn.o_proj.weight"))
        m = rms_norm(x, T(w, p + "post_attention_layernorm.weight"))
        m = F.silu(F.linear(m, T(w, p + "mlp.gate_proj.weight"))) * F.linear(
            m, T(w, p + "mlp.up_proj.weight"))
        x = x + F.linear(m, T(w, p + "mlp.down_proj.weight"))
    x = rms_norm(x, T(w, "norm.weight"))
    return F.linear(x, T(w, "lm_head.weight")), present


# ---- the IR ----

class Ir:
    """Accumulates the text of one model."""

    def __init__(self, name, weights):
        self.lines = ["model %s {" % name, '  weights "%s"' % weights, ""]

    def __call__(self, line=""):
        self.lines.append("  " + line if line else "")

    def text(self):
        return "\n".join(self.lines + ["}", ""])


def ir_attention(ir, c, p, q, k, v, S, step, mask=None, rope=None, layer=0):
    """Multi-head attention on %q, %k, %v [?, S, D]: heads by reshape and
    transpose, Q K^T scaled by a literal, softmax (causal unless a mask is
    given), P V, heads merged back. step: the decode step, whose keys and
    values are the past's (inputs %past.LAYER.k/v) joined with the new ones.
    rope: the names of the cos and sin tables to rotate q and k with.
    Returns the name of the merged result [?, S, D]."""
    H, d = c["heads"], c["d"]
    hd = d // H
    for n in (q, k, v):
        ir("%%%s.h = reshape %%%s {shape = [?, %d, %d, %d]}" % (n, n, S, H, hd))
        ir("%%%s.t = transpose %%%s.h {perm = [0, 2, 1, 3]}     ; [?, H, S, hd]" % (n, n))
    if rope:
        cos, sin = rope
        for n in (q, k):
            # x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
            ir("%%%s.x1, %%%s.x2 = split %%%s.t {axis = -1}" % (n, n, n))
            ir("%%%s.nx2 = mul %%%s.x2, -1" % (n, n))
            ir("%%%s.rh = concat %%%s.nx2, %%%s.x1 {axis = -1}" % (n, n, n))
            ir("%%%s.c = mul %%%s.t, @%s" % (n, n, cos))
            ir("%%%s.s = mul %%%s.rh, @%s" % (n, n, sin))
            ir("%%%s.r = add %%%s.c, %%%s.s" % (n, n, n))
        qn, kn = q + ".r", k + ".r"
    else:
        qn, kn = q + ".t", k + ".t"
    vn = v + ".t"
    if step:
        l = layer
        ir("%%present.%s.k = concat %%past.%s.k, %%%s {axis = 2}   ; [?, H, P + 1, hd]" % (l, l, kn))
        ir("%%present.%s.v = concat %%past.%s.v, %%%s {axis = 2}" % (l, l, vn))
        kn, vn = "present.%s.k" % l, "present.%s.v" % l
    ir("%%%skt = transpose %%%s {perm = [0, 1, 3, 2]}         ; K^T [?, H, hd, keys]" % (p, kn))
    ir("%%%ss = matmul %%%s, %%%skt" % (p, qn, p))
    ir("%%%sss = mul %%%ss, %s                         ; 1 / sqrt(hd)" % (p, p, lit(1 / math.sqrt(hd))))
    scores = p + "ss"
    if mask:
        ir("%%%ssm = add %%%sss, %%%s                    ; + the additive mask" % (p, p, mask))
        scores = p + "sm"
        ir("%%%sp = softmax %%%s {axis = -1}" % (p, scores))
    else:
        ir("%%%sp = softmax %%%s {axis = -1, causal = 1}" % (p, scores))
    ir("%%%so = matmul %%%sp, %%%s" % (p, p, vn))
    ir("%%%sot = transpose %%%so {perm = [0, 2, 1, 3]}" % (p, p))
    ir("%%%sof = reshape %%%sot {shape = [?, %d, %d]}" % (p, p, S, d))
    return p + "of"


def gpt2_ir(c, weights, step=False):
    d, L, H = c["d"], c["layers"], c["heads"]
    P = c["T"] - 1
    S = 1 if step else c["T"]
    ir = Ir("gpt2_step" if step else "gpt2", weights)
    ir("input %%ids : i32[?, %d]" % S)
    if step:
        for l in range(L):
            for kv in "kv":
                ir("input %%past.%d.%s : f32[?, %d, %d, %d]" % (l, kv, H, P, d // H))
    ir("%tok = gather @wte, %ids                        ; [?, S, D]")
    ir("%%pos = gather @wpe, @%s                     ; [S, D]" %
       ("step.pos_ids" if step else "pos_ids"))
    ir("%x.0 = add %tok, %pos")
    for l in range(L):
        p = "h%d." % l
        w = "h.%d." % l
        x = "x.%d" % l
        ir()
        ir("; block %d: pre-LayerNorm attention" % l)
        ir("%%%sln1 = layernorm %%%s, @%sln_1.weight, @%sln_1.bias {eps = 1e-5}" % (p, x, w, w))
        ir("%%%sqkv = linear %%%sln1, @%sattn.c_attn.weight, @%sattn.c_attn.bias" % (p, p, w, w))
        ir("%%%sq, %%%sk, %%%sv = split %%%sqkv {axis = -1}" % (p, p, p, p))
        o = ir_attention(ir, c, p, p + "q", p + "k", p + "v", S, step, layer=l)
        ir("%%%sattn = linear %%%s, @%sattn.c_proj.weight, @%sattn.c_proj.bias" % (p, o, w, w))
        ir("%%%sres = add %%%s, %%%sattn" % (p, x, p))
        ir("; MLP")
        ir("%%%sln2 = layernorm %%%sres, @%sln_2.weight, @%sln_2.bias {eps = 1e-5}" % (p, p, w, w))
        ir("%%%sfc = linear %%%sln2, @%smlp.c_fc.weight, @%smlp.c_fc.bias" % (p, p, w, w))
        ir("%%%sgelu = gelu %%%sfc {approximate = tanh}" % (p, p))
        ir("%%%smlp = linear %%%sgelu, @%smlp.c_proj.weight, @%smlp.c_proj.bias" % (p, p, w, w))
        ir("%%x.%d = add %%%sres, %%%smlp" % (l + 1, p, p))
    ir()
    ir("%%lnf = layernorm %%x.%d, @ln_f.weight, @ln_f.bias {eps = 1e-5}" % L)
    ir("%logits = linear %lnf, @wte                    ; tied LM head, no bias")
    outs = ["%logits"] + ["%%present.%d.%s" % (l, kv) for l in range(L) for kv in "kv"] \
        if step else ["%logits"]
    ir("output " + ", ".join(outs))
    return ir.text()


def bert_ir(c, weights):
    d, L = c["d"], c["layers"]
    S = c["T"]
    e = "embeddings."
    ir = Ir("bert", weights)
    ir("input %%ids : i32[?, %d]" % S)
    ir("input %%mask : f32[?, %d]                         ; 1 = token, 0 = padding" % S)
    ir("%%tok = gather @%sword_embeddings.weight, %%ids" % e)
    ir("%%pos = gather @%sposition_embeddings.weight, @pos_ids" % e)
    ir("%%typ = gather @%stoken_type_embeddings.weight, @type_ids   ; all type 0" % e)
    ir("%e.0 = add %tok, %pos")
    ir("%e.1 = add %e.0, %typ")
    ir("%%x.0 = layernorm %%e.1, @%sLayerNorm.weight, @%sLayerNorm.bias {eps = 1e-12}" % (e, e))
    ir("; the 0/1 mask made additive, (1 - mask) * -10000, as [?, 1, 1, S]")
    ir("%mask.inv = sub 1, %mask")
    ir("%mask.add = mul %mask.inv, -10000")
    ir("%%mask.b = reshape %%mask.add {shape = [?, 1, 1, %d]}" % S)
    for l in range(L):
        p = "l%d." % l
        w = "encoder.layer.%d." % l
        x = "x.%d" % l
        ir()
        ir("; layer %d: post-LayerNorm attention" % l)
        for n, hf in (("q", "query"), ("k", "key"), ("v", "value")):
            ir("%%%s%s = linear %%%s, @%sattention.self.%s.weight, @%sattention.self.%s.bias"
               % (p, n, x, w, hf, w, hf))
        o = ir_attention(ir, c, p, p + "q", p + "k", p + "v", S, False, mask="mask.b")
        ir("%%%sao = linear %%%s, @%sattention.output.dense.weight, "
           "@%sattention.output.dense.bias" % (p, o, w, w))
        ir("%%%sar = add %%%sao, %%%s" % (p, p, x))
        ir("%%%sh = layernorm %%%sar, @%sattention.output.LayerNorm.weight, "
           "@%sattention.output.LayerNorm.bias {eps = 1e-12}" % (p, p, w, w))
        ir("%%%sfc = linear %%%sh, @%sintermediate.dense.weight, @%sintermediate.dense.bias"
           % (p, p, w, w))
        ir("%%%sgelu = gelu %%%sfc" % (p, p))
        ir("%%%sfo = linear %%%sgelu, @%soutput.dense.weight, @%soutput.dense.bias" % (p, p, w, w))
        ir("%%%sfr = add %%%sfo, %%%sh" % (p, p, p))
        ir("%%x.%d = layernorm %%%sfr, @%soutput.LayerNorm.weight, @%soutput.LayerNorm.bias "
           "{eps = 1e-12}" % (l + 1, p, w, w))
    ir()
    ir("; pooler: the first token, linear, tanh; then the classifier")
    ir("%%cls = slice %%x.%d {axis = 1, start = 0, end = 1}" % L)
    ir("%%cls.f = reshape %%cls {shape = [?, %d]}" % d)
    ir("%pool.l = linear %cls.f, @pooler.dense.weight, @pooler.dense.bias")
    ir("%pool = tanh %pool.l")
    ir("%logits = linear %pool, @classifier.weight, @classifier.bias")
    ir("output %logits")
    return ir.text()


def llama_ir(c, weights, step=False):
    d, L, H = c["d"], c["layers"], c["heads"]
    P = c["T"] - 1
    S = 1 if step else c["T"]
    rope = ("step.rope.cos", "step.rope.sin") if step else ("rope.cos", "rope.sin")
    ir = Ir("llama_step" if step else "llama", weights)
    ir("input %%ids : i32[?, %d]" % S)
    if step:
        for l in range(L):
            for kv in "kv":
                ir("input %%past.%d.%s : f32[?, %d, %d, %d]" % (l, kv, H, P, d // H))
    ir("%x.0 = gather @embed_tokens.weight, %ids")
    for l in range(L):
        p = "l%d." % l
        w = "layers.%d." % l
        x = "x.%d" % l
        ir()
        ir("; layer %d: RMSNorm, attention with rotary embeddings" % l)
        ir("%%%sn1 = rmsnorm %%%s, @%sinput_layernorm.weight {eps = 1e-6}" % (p, x, w))
        for n in "qkv":
            ir("%%%s%s = linear %%%sn1, @%sself_attn.%s_proj.weight" % (p, n, p, w, n))
        o = ir_attention(ir, c, p, p + "q", p + "k", p + "v", S, step, rope=rope, layer=l)
        ir("%%%sattn = linear %%%s, @%sself_attn.o_proj.weight" % (p, o, w))
        ir("%%%sres = add %%%s, %%%sattn" % (p, x, p))
        ir("; SiLU-gated MLP")
        ir("%%%sn2 = rmsnorm %%%sres, @%spost_attention_layernorm.weight {eps = 1e-6}" % (p, p, w))
        ir("%%%sgate = linear %%%sn2, @%smlp.gate_proj.weight" % (p, p, w))
        ir("%%%sup = linear %%%sn2, @%smlp.up_proj.weight" % (p, p, w))
        ir("%%%sact = silu %%%sgate" % (p, p))
        ir("%%%sgu = mul %%%sact, %%%sup" % (p, p, p))
        ir("%%%sdown = linear %%%sgu, @%smlp.down_proj.weight" % (p, p, w))
        ir("%%x.%d = add %%%sres, %%%sdown" % (l + 1, p, p))
    ir()
    ir("%%nf = rmsnorm %%x.%d, @norm.weight {eps = 1e-6}" % L)
    ir("%logits = linear %nf, @lm_head.weight             ; untied LM head")
    outs = ["%logits"] + ["%%present.%d.%s" % (l, kv) for l in range(L) for kv in "kv"] \
        if step else ["%logits"]
    ir("output " + ", ".join(outs))
    return ir.text()


# ---- samples ----

def token_ids(rng, n, c):
    return rng.integers(0, c["vocab"], (n, c["T"])).astype(np.int32)


def bert_mask(rng, n, c):
    """Sequences of T/2..T tokens, the rest padding."""
    lens = rng.integers(c["T"] // 2, c["T"] + 1, n)
    return (np.arange(c["T"])[None, :] < lens[:, None]).astype(np.float32)


def main():
    global OUTLIER_GAMMA
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", choices=("gpt2", "bert", "llama"))
    ap.add_argument("size", choices=sorted(SIZES))
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, help="calibration samples (default by size)")
    ap.add_argument("--batch", type=int, help="held-out samples (default by size)")
    ap.add_argument("--outlier-gamma", type=float, default=OUTLIER_GAMMA,
                    help="the outlier channels' norm gamma (1: no outliers)")
    ap.add_argument("--ref", action=argparse.BooleanOptionalAction,
                    help="run PyTorch for the reference outputs and the step's past keys and "
                         "values (default: for tiny only; see the file's comment)")
    a = ap.parse_args()
    c = dict(SIZES[a.size])
    OUTLIER_GAMMA = a.outlier_gamma
    ncal = a.calib or c["calib"]
    nin = a.batch or c["batch"]
    ref_on = a.ref if a.ref is not None else a.size == "tiny"
    os.makedirs(a.outdir, exist_ok=True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed + 1)
    out = lambda n: os.path.join(a.outdir, n)  # noqa: E731
    wname = a.arch + ".safetensors"
    S, P = c["T"], c["T"] - 1
    man = {"arch": a.arch, "size": a.size, "config": c, "seed": a.seed, "reference": ref_on,
           "outlier_gamma": OUTLIER_GAMMA,
           "models": {}}

    def save_inputs(prefix, arrays):
        files = {}
        for n, v in arrays.items():
            files[n] = prefix + n + ".npy"
            np.save(out(files[n]), v)
        return files

    if a.arch == "bert":
        w = bert_weights(a.seed, c)
        w["pos_ids"] = np.arange(S, dtype=np.int32)
        w["type_ids"] = np.zeros(S, np.int32)
        with open(out("bert.ir"), "w") as f:
            f.write(bert_ir(c, wname))
        cal = {"ids": token_ids(rng, ncal, c), "mask": bert_mask(rng, ncal, c)}
        held = {"ids": token_ids(rng, nin, c), "mask": bert_mask(rng, nin, c)}
        write_safetensors(out("calib.safetensors"), cal)
        man["models"]["full"] = {"ir": "bert.ir", "calib": "calib.safetensors",
                                 "inputs": save_inputs("in.", held), "outputs": {}}
        if ref_on:
            with torch.no_grad():
                ref = bert_torch(w, c, torch.from_numpy(held["ids"]).long(),
                                 torch.from_numpy(held["mask"])).numpy()
            np.save(out("ref.logits.npy"), ref)
            man["models"]["full"]["outputs"]["logits"] = "ref.logits.npy"
    else:
        make_w, fwd, make_ir = {"gpt2": (gpt2_weights, gpt2_torch, gpt2_ir),
                                "llama": (llama_weights, llama_torch, llama_ir)}[a.arch]
        w = make_w(a.seed, c)
        if a.arch == "gpt2":
            w["pos_ids"] = np.arange(S, dtype=np.int32)
            w["step.pos_ids"] = np.array([P], np.int32)
        else:
            cos, sin = rope_tables(c)
            w["rope.cos"], w["rope.sin"] = cos, sin
            w["step.rope.cos"], w["step.rope.sin"] = cos[P:P + 1].copy(), sin[P:P + 1].copy()
        with open(out(a.arch + ".ir"), "w") as f:
            f.write(make_ir(c, wname))
        with open(out(a.arch + "_step.ir"), "w") as f:
            f.write(make_ir(c, wname, step=True))
        cal = token_ids(rng, ncal, c)
        held = token_ids(rng, nin, c)

        def step_inputs(ids):
            """The step's inputs for sequences `ids` [n, T]: token P, and
            PyTorch's keys and values of positions 0..P-1 (without --ref,
            standard-normal stand-ins of their shape, for timing only)."""
            d = {"ids": ids[:, P:].copy()}
            if not ref_on:
                shape = (len(ids), c["heads"], P, c["d"] // c["heads"])
                for l in range(c["layers"]):
                    for kv in "kv":
                        d["past.%d.%s" % (l, kv)] = rng.standard_normal(shape).astype(np.float32)
                return d
            with torch.no_grad():
                _, present = fwd(w, c, torch.from_numpy(ids[:, :P]).long())
            for l, (k, v) in enumerate(present):
                d["past.%d.k" % l] = k.numpy().copy()
                d["past.%d.v" % l] = v.numpy().copy()
            return d
        np.save(out("calib.npy"), cal)
        if ref_on:
            with torch.no_grad():
                ref, _ = fwd(w, c, torch.from_numpy(held).long())
            np.save(out("ref.logits.npy"), ref.numpy())
            np.save(out("ref.last_logits.npy"), ref.numpy()[:, P:])
        # The step sees one token per sample: it is calibrated on 4 times as
        # many sequences as the full window (their first T tokens each).
        write_safetensors(out("step_calib.safetensors"),
                          step_inputs(np.concatenate([cal, token_ids(rng, 3 * ncal, c)])))
        man["models"]["full"] = {"ir": a.arch + ".ir", "calib": "calib.npy",
                                 "inputs": save_inputs("in.", {"ids": held}),
                                 "outputs": {"logits": "ref.logits.npy"} if ref_on else {}}
        man["models"]["step"] = {"ir": a.arch + "_step.ir", "calib": "step_calib.safetensors",
                                 "inputs": save_inputs("step_in.", step_inputs(held)),
                                 "outputs": {"logits": "ref.last_logits.npy"} if ref_on else {},
                                 "past": P}
    write_safetensors(out(wname), w)
    with open(out("manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
