"""Test models shared by the backend tests (test_codegen.py for x86,
test_aarch64.py for AArch64), and the quantized boundary as numpy computes
it: the same models and inputs go through every backend, and a test of the
quantized entry reads the parameters from the quantized IR."""
import os
import re

import numpy as np

from q8test import tmpdir, write_safetensors


def linear_params(rng, n_out, n_in):
    """PyTorch's default init for a Linear layer: W [n_out, n_in] and b."""
    bound = 1.0 / np.sqrt(n_in)
    return (rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
            rng.uniform(-bound, bound, n_out).astype(np.float32))


def write_model(d, name, text, tensors):
    """d/name.ir from `text` (WEIGHTS naming d/name.safetensors) and its weights."""
    write_safetensors(os.path.join(d, name + ".safetensors"), tensors)
    path = os.path.join(d, name + ".ir")
    with open(path, "w") as f:
        f.write(text.replace("WEIGHTS", name + ".safetensors"))
    return path


MLP = """model mlp {
  weights "WEIGHTS"
  input %x : f32[?, 48]
  %h = linear %x, @w1, @b1
  %a = relu %h
  %h2 = linear %a, @w2, @b2
  %a2 = relu %h2
  %y = linear %a2, @w3, @b3
  output %y
}
"""


def mlp_model(rng):
    """A 3-layer MLP 48-96-80-10 with relu in a new directory: (model, calib)."""
    w1, b1 = linear_params(rng, 96, 48)
    w2, b2 = linear_params(rng, 80, 96)
    w3, b3 = linear_params(rng, 10, 80)
    d = tmpdir()
    model = write_model(d, "mlp", MLP,
                        {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3})
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((64, 48)).astype(np.float32))
    return model, calib


FLOAT_OPS = """model mixed {
  weights "WEIGHTS"
  input %x : f32[?, 4, 16]
  %h = linear %x, @w1, @b1
  %g = gelu %h
  %l = layernorm %g, @gamma, @beta {eps = 1e-5}
  %r = add %l, %x
  %s = mul %r, @scale
  %k = matmul %s, @m
  %kt = transpose %k
  %att = matmul %k, %kt
  %p = softmax %att
  %f = reshape %p {shape = [?, 16]}
  %y = linear %f, @w2
  output %y, %p
}
"""


def float_ops_model(rng):
    """int8 layers around every float op, in a new directory: (model, calib).
    Its matmul of two activations (%att) becomes a qmatmul on a u8 and an f32
    operand, so test_codegen and test_aarch64 (under qemu) check qmatmul on
    every variant too."""
    w1, b1 = linear_params(rng, 16, 16)
    w2, _ = linear_params(rng, 8, 16)
    tensors = {"w1": w1, "b1": b1, "w2": w2,
               "gamma": rng.uniform(0.5, 1.5, 16).astype(np.float32),
               "beta": rng.uniform(-0.5, 0.5, 16).astype(np.float32),
               "scale": rng.uniform(0.5, 1.5, 16).astype(np.float32),
               "m": (rng.standard_normal((16, 4)) * 0.3).astype(np.float32)}
    d = tmpdir()
    model = write_model(d, "mixed", FLOAT_OPS, tensors)
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((32, 4, 16)).astype(np.float32))
    return model, calib


TRANSFORMER_OPS = """model tf {
  weights "WEIGHTS"
  input %x : f32[?, 4, 16]
  %h = linear %x, @w1, @b1
  %s = silu %h
  %g = gelu %s {approximate = tanh}
  %t = tanh %g
  %sg = sigmoid %t
  %d = div %sg, 2
  %e = sub %d, @col
  %r = reshape %e {shape = [?, 2, 2, 16]}
  %k = reshape %x {shape = [?, 1, 16, 4]}
  %a = matmul %r, %k
  %am = mul %a, 0.125
  %msk = add %am, @mask
  %p = softmax %msk
  %v = matmul %p, @m
  %z = reshape %v {shape = [?, 4, 16]}
  %q = div %z, @scale
  %y = linear %q, @w2
  output %y, %p
}
"""


def transformer_ops_model(rng):
    """int8 layers around the transformer ops (sub, div, sigmoid, tanh, silu,
    gelu tanh), size-1 broadcasting, matmul with broadcast batch dims and
    literal scalars, in a new directory: (model, calib)."""
    w1, b1 = linear_params(rng, 16, 16)
    w2, _ = linear_params(rng, 8, 16)
    tensors = {"w1": w1, "b1": b1, "w2": w2,
               "col": rng.uniform(-0.5, 0.5, (4, 1)).astype(np.float32),
               "mask": np.where(rng.uniform(size=(2, 1, 4)) < 0.3, -10000.0, 0.0).astype(
                   np.float32),
               "scale": rng.uniform(0.5, 1.5, 16).astype(np.float32),
               "m": (rng.standard_normal((4, 16)) * 0.3).astype(np.float32)}
    d = tmpdir()
    model = write_model(d, "tf", TRANSFORMER_OPS, tensors)
    calib = os.path.join(d, "calib.npy")
    np.save(calib, rng.standard_normal((32, 4, 16)).astype(np.float32))
    return model, calib


QFORM = re.compile(r"^\s*(input|output) %([\w.]+)[^{\n]*\{[^}\n]*scale = ([^,}]+), "
                   r"zero_point = (-?\d+), dtype = (u8|i8)\}", re.M)


def qforms(ir_text):
    """{(kind, name): (scale, zero_point, dtype)} of the quantized boundary."""
    return {(m.group(1), m.group(2)): (np.float32(m.group(3)), int(m.group(4)), m.group(5))
            for m in QFORM.finditer(ir_text)}


def quantize(y, form):
    """quantize as docs/quantization.md defines it: clamp(rint(y / scale)) + zp, in f32."""
    scale, zp, dtype = form
    lo, hi = (0, 255) if dtype == "u8" else (-127, 127)
    q = np.clip(np.rint(y.astype(np.float32) / scale), lo - zp, hi - zp) + zp
    return q.astype(np.uint8 if dtype == "u8" else np.int8)
