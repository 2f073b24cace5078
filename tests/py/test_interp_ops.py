"""test_interp_ops: the f32 interpreter (`q8c run`) against numpy, op by op.

Usage: python3 tests/py/test_interp_ops.py /path/to/q8c

Each case is a small text-IR model, its weights as safetensors and seeded
random inputs as .npy, written to a scratch directory; `q8c run` evaluates it
and its outputs are compared with a numpy implementation of the documented
semantics (np.allclose, rtol 1e-5, atol 1e-6, NaN where numpy gives NaN).
Every op is covered alone, with numpy broadcasting from both sides (size-1
dims on either side, the batch dimension in several places, matmul's batch
dims), literal scalar operands (`mul %x, 0.125`, `-inf`), and then in
combinations: an MLP, an attention-like block, layernorm + gelu.

The numpy reference rounds to float32 after every op, as the interpreter
does, and computes each op in float64: sums and reductions in the interpreter
accumulate in double, so the remaining difference is float rounding, not the
order of a float32 sum.
"""
import math
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import q8test  # noqa: E402

F32 = np.float32

# ---- the reference semantics ----


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def linear(x, w, b=None):
    y = _f64(x) @ _f64(w).T
    if b is not None:
        y = y + _f64(b)
    return y.astype(F32)


def matmul(a, b):
    return (_f64(a) @ _f64(b)).astype(F32)


def add(a, b):
    with np.errstate(invalid="ignore"):
        return (np.asarray(a, F32) + np.asarray(b, F32)).astype(F32)


def mul(a, b):
    with np.errstate(invalid="ignore"):
        return (np.asarray(a, F32) * np.asarray(b, F32)).astype(F32)


def relu(x):
    return np.maximum(x, F32(0)).astype(F32)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    x = _f64(x)
    return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(F32)


def softmax(x):
    x = _f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


def layernorm(x, gamma, beta, eps=1e-5):
    x = _f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * _f64(gamma) + _f64(beta)).astype(F32)


def sub(a, b):
    return (np.asarray(a, F32) - np.asarray(b, F32)).astype(F32)


def div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(a, F32) / np.asarray(b, F32)).astype(F32)


def sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-_f64(x)))).astype(F32)


def tanh(x):
    return np.tanh(_f64(x)).astype(F32)


def silu(x):
    x = _f64(x)
    with np.errstate(over="ignore"):
        return (x / (1.0 + np.exp(-x))).astype(F32)


def gelu_tanh(x):
    x = _f64(x)
    c = math.sqrt(2.0 / math.pi)
    return (0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x * x * x)))).astype(F32)


def transpose(x, perm=None):
    if perm is None:
        return np.ascontiguousarray(np.swapaxes(x, -1, -2))
    return np.ascontiguousarray(np.transpose(x, perm))


# ---- cases ----


class Case:
    """One model: `body` is the text between `model t {` and `}` minus the
    weights line, which is added when there are constants. `ref` maps the
    input dict to the expected output dict. `named` forces the name=file form
    of -i/-o even for one input and one output; `batch` passes --batch."""

    def __init__(self, name, body, inputs, ref, consts=None, named=False, batch=None):
        self.name = name
        self.body = body
        self.inputs = inputs
        self.ref = ref
        self.consts = consts or {}
        self.named = named
        self.batch = batch


def rng_for(name):
    """A generator seeded from the case name, so cases do not shift each
    other's data when one is added."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def weight(rng, n, k):
    """[n, k] with unit-variance outputs for unit-variance inputs."""
    return randn(rng, n, k, scale=1.0 / math.sqrt(k))


def cases():
    out = []

    def case(name, body, make):
        """`make(rng)` returns (inputs, consts, ref, options)."""
        inputs, consts, ref, opts = make(rng_for(name))
        out.append(Case(name, body, inputs, ref, consts, **opts))

    # linear
    def linear_bias(r):
        c = {"fc1.weight": weight(r, 32, 64), "fc1.bias": randn(r, 32)}
        return ({"x": randn(r, 5, 64)}, c,
                lambda i: {"y": linear(i["x"], c["fc1.weight"], c["fc1.bias"])}, {})

    case("linear_bias", """
  input %x : f32[?, 64]
  %y = linear %x, @fc1.weight, @fc1.bias
  output %y
""", linear_bias)

    def linear_nobias(r):
        c = {"w": weight(r, 7, 16)}
        return ({"x": randn(r, 3, 4, 16)}, c, lambda i: {"y": linear(i["x"], c["w"])}, {})

    case("linear_no_bias_rank3", """
  input %x : f32[?, 4, 16]
  %y = linear %x, @w
  output %y
""", linear_nobias)

    def linear_batch1(r):
        c = {"w": weight(r, 3, 5), "b": randn(r, 3)}
        return ({"x": randn(r, 1, 5)}, c,
                lambda i: {"y": linear(i["x"], c["w"], c["b"])}, {"batch": 1})

    case("linear_batch1_flag", """
  input %x : f32[?, 5]
  %y = linear %x, @w, @b
  output %y
""", linear_batch1)

    # matmul
    def matmul_const(r):
        c = {"w2": weight(r, 9, 12).T.copy()}
        return ({"a": randn(r, 2, 3, 12)}, c, lambda i: {"y": matmul(i["a"], c["w2"])}, {})

    case("matmul_shared_const", """
  input %a : f32[?, 3, 12]
  %y = matmul %a, @w2
  output %y
""", matmul_const)

    def matmul_values(r):
        return ({"q": randn(r, 3, 4, 8), "k": randn(r, 3, 8, 6)}, {},
                lambda i: {"y": matmul(i["q"], i["k"])}, {})

    case("matmul_batched_values", """
  input %q : f32[?, 4, 8]
  input %k : f32[?, 8, 6]
  %y = matmul %q, %k
  output %y
""", matmul_values)

    def matmul_matrix_input(r):
        return ({"a": randn(r, 4, 8), "b": randn(r, 8, 5)}, {},
                lambda i: {"y": matmul(i["a"], i["b"])}, {"named": True})

    case("matmul_rank2_values", """
  input %a : f32[?, 8]
  input %b : f32[8, 5]
  %y = matmul %a, %b
  output %y
""", matmul_matrix_input)

    def matmul_const_left(r):
        c = {"a": randn(r, 6, 8)}
        return ({"x": randn(r, 8, 3)}, c, lambda i: {"y": matmul(c["a"], i["x"])}, {})

    case("matmul_const_left", """
  input %x : f32[8, 3]
  %y = matmul @a, %x
  output %y
""", matmul_const_left)

    # add and mul: equal shapes, the shorter operand on either side
    for op, fn in (("add", add), ("mul", mul)):
        def same(r, fn=fn):
            return ({"a": randn(r, 4, 6), "b": randn(r, 4, 6)}, {},
                    lambda i: {"y": fn(i["a"], i["b"])}, {})

        case(f"{op}_same_shape", f"""
  input %a : f32[?, 6]
  input %b : f32[?, 6]
  %y = {op} %a, %b
  output %y
""", same)

        def right(r, fn=fn):
            c = {"bias_vec": randn(r, 6)}
            return ({"x": randn(r, 4, 6)}, c, lambda i: {"y": fn(i["x"], c["bias_vec"])}, {})

        case(f"{op}_broadcast_right", f"""
  input %x : f32[?, 6]
  %y = {op} %x, @bias_vec
  output %y
""", right)

        def left(r, fn=fn):
            c = {"m": randn(r, 3, 5)}
            return ({"x": randn(r, 2, 3, 5)}, c, lambda i: {"y": fn(c["m"], i["x"])}, {})

        case(f"{op}_broadcast_left_rank3", f"""
  input %x : f32[?, 3, 5]
  %y = {op} @m, %x
  output %y
""", left)

        def values(r, fn=fn):
            return ({"a": randn(r, 2, 3, 5), "b": randn(r, 5)}, {},
                    lambda i: {"y": fn(i["b"], i["a"])}, {"named": True})

        case(f"{op}_broadcast_values", f"""
  input %a : f32[?, 3, 5]
  input %b : f32[5]
  %y = {op} %b, %a
  output %y
""", values)

    # elementwise activations
    def unary(fn, scale=1.0, shape=(6, 33)):
        def make(r):
            return ({"x": randn(r, *shape, scale=scale)}, {},
                    lambda i: {"y": fn(i["x"])}, {})
        return make

    case("relu", """
  input %x : f32[?, 33]
  %y = relu %x
  output %y
""", unary(relu))
    case("gelu", """
  input %x : f32[?, 33]
  %y = gelu %x
  output %y
""", unary(gelu, scale=3.0))
    case("softmax", """
  input %x : f32[?, 33]
  %y = softmax %x
  output %y
""", unary(softmax, scale=2.0))
    case("softmax_large_logits", """
  input %x : f32[?, 4, 17]
  %y = softmax %x
  output %y
""", unary(softmax, scale=300.0, shape=(2, 4, 17)))

    def ln(eps):
        def make(r):
            c = {"gamma": (1 + randn(r, 24, scale=0.1)), "beta": randn(r, 24, scale=0.1)}
            x = randn(r, 5, 24, scale=2.0) + F32(3.0)
            return ({"x": x}, c,
                    lambda i: {"y": layernorm(i["x"], c["gamma"], c["beta"], eps)}, {})
        return make

    case("layernorm_eps", """
  input %x : f32[?, 24]
  %y = layernorm %x, @gamma, @beta {eps = 0.01}
  output %y
""", ln(0.01))
    case("layernorm_default_eps", """
  input %x : f32[?, 24]
  %y = layernorm %x, @gamma, @beta
  output %y
""", ln(1e-5))

    # layout
    case("transpose_default_rank3", """
  input %x : f32[?, 3, 5]
  %y = transpose %x
  output %y
""", unary(transpose, shape=(2, 3, 5)))
    case("transpose_default_rank2", """
  input %x : f32[?, 7]
  %y = transpose %x
  output %y
""", unary(transpose, shape=(4, 7)))
    case("transpose_perm_021", """
  input %x : f32[?, 3, 4]
  %y = transpose %x {perm = [0, 2, 1]}
  output %y
""", unary(lambda x: transpose(x, (0, 2, 1)), shape=(2, 3, 4)))
    case("transpose_perm_moves_batch", """
  input %x : f32[?, 3, 4]
  %y = transpose %x {perm = [2, 0, 1]}
  output %y
""", unary(lambda x: transpose(x, (2, 0, 1)), shape=(2, 3, 4)))
    case("reshape_split", """
  input %x : f32[?, 64]
  %y = reshape %x {shape = [?, 8, 8]}
  output %y
""", unary(lambda x: x.reshape(x.shape[0], 8, 8), shape=(3, 64)))
    case("reshape_merge", """
  input %x : f32[?, 4, 6]
  %y = reshape %x {shape = [?, 24]}
  output %y
""", unary(lambda x: x.reshape(x.shape[0], 24), shape=(3, 4, 6)))

    # the transformer ops: sub, div, sigmoid, tanh, silu, gelu (tanh form)
    for op, fn in (("sub", sub), ("div", div)):
        def same_sd(r, fn=fn):
            return ({"a": randn(r, 4, 6), "b": randn(r, 4, 6)}, {},
                    lambda i: {"y": fn(i["a"], i["b"])}, {})

        case(f"{op}_same_shape", f"""
  input %a : f32[?, 6]
  input %b : f32[?, 6]
  %y = {op} %a, %b
  output %y
""", same_sd)

        def left_sd(r, fn=fn):
            c = {"m": randn(r, 3, 5)}
            return ({"x": randn(r, 2, 3, 5)}, c, lambda i: {"y": fn(c["m"], i["x"])}, {})

        case(f"{op}_broadcast_left_rank3", f"""
  input %x : f32[?, 3, 5]
  %y = {op} @m, %x
  output %y
""", left_sd)

    # numpy broadcasting: size-1 dims on both sides, any rank, the batch dim
    for op, fn in (("add", add), ("mul", mul), ("sub", sub), ("div", div)):
        def mask(r, fn=fn):
            return ({"s": randn(r, 2, 1, 8, 8), "m": randn(r, 2, 8, 8)}, {},
                    lambda i: {"y": fn(i["s"], i["m"])}, {})

        case(f"{op}_size1_batch", f"""
  input %s : f32[?, 1, 8, 8]
  input %m : f32[?, 8, 8]
  %y = {op} %s, %m
  output %y
""", mask)

        def both(r, fn=fn):
            c = {"col": randn(r, 4, 1)}
            return ({"x": randn(r, 3, 1, 1, 5)}, c, lambda i: {"y": fn(c["col"], i["x"])}, {})

        case(f"{op}_size1_both_sides", f"""
  input %x : f32[?, 1, 1, 5]
  %y = {op} @col, %x
  output %y
""", both)

    def literals(r):
        def ref(i):
            x = i["x"]
            s = mul(sub(div(x, F32(2)), F32(1)), F32(0.125))
            return {"y": add(sub(F32(0.5), s), F32(-10000))}
        return ({"x": randn(r, 3, 7)}, {}, ref, {})

    case("literal_scalars", """
  input %x : f32[?, 7]
  %h = div %x, 2
  %d = sub %h, 1
  %s = mul %d, 0.125
  %t = sub 0.5, %s
  %y = add %t, -10000
  output %y
""", literals)

    def inf_literal(r):
        x = randn(r, 2, 5)
        x[0, 0] = 0
        return ({"x": x}, {}, lambda i: {"y": mul(i["x"], F32(-np.inf))}, {})

    case("literal_inf", """
  input %x : f32[?, 5]
  %y = mul %x, -inf
  output %y
""", inf_literal)

    case("sigmoid", """
  input %x : f32[?, 33]
  %y = sigmoid %x
  output %y
""", unary(sigmoid, scale=8.0))
    case("tanh", """
  input %x : f32[?, 33]
  %y = tanh %x
  output %y
""", unary(tanh, scale=4.0))
    case("silu", """
  input %x : f32[?, 33]
  %y = silu %x
  output %y
""", unary(silu, scale=8.0))
    case("gelu_tanh", """
  input %x : f32[?, 33]
  %y = gelu %x {approximate = tanh}
  output %y
""", unary(gelu_tanh, scale=3.0))
    case("gelu_approximate_none", """
  input %x : f32[?, 33]
  %y = gelu %x {approximate = none}
  output %y
""", unary(gelu, scale=3.0))
    case("activations_extremes", """
  input %x : f32[?, 8]
  %a = sigmoid %x
  %b = tanh %x
  %c = silu %x
  %d = gelu %x {approximate = tanh}
  output %a, %b, %c, %d
""", lambda r: ({"x": np.array([[0, 1, -1, 30, -30, 100, -100, 88.5]] * 2, dtype=F32)}, {},
                lambda i: {"a": sigmoid(i["x"]), "b": tanh(i["x"]), "c": silu(i["x"]),
                           "d": gelu_tanh(i["x"])}, {}))

    # matmul with broadcast batch dims
    def mm_bcast(r):
        return ({"a": randn(r, 2, 4, 16, 8), "b": randn(r, 2, 1, 8, 16)}, {},
                lambda i: {"y": matmul(i["a"], i["b"])}, {})

    case("matmul_broadcast_batch", """
  input %a : f32[?, 4, 16, 8]
  input %b : f32[?, 1, 8, 16]
  %y = matmul %a, %b
  output %y
""", mm_bcast)

    def mm_shared(r):
        return ({"a": randn(r, 2, 4, 16, 8), "b": randn(r, 8, 16)}, {},
                lambda i: {"y": matmul(i["a"], i["b"])}, {"named": True})

    case("matmul_rank4_by_matrix_value", """
  input %a : f32[?, 4, 16, 8]
  input %b : f32[8, 16]
  %y = matmul %a, %b
  output %y
""", mm_shared)

    def mm_const3(r):
        c = {"w": randn(r, 5, 4, 2)}
        return ({"x": randn(r, 2, 1, 3, 4)}, c, lambda i: {"y": matmul(i["x"], c["w"])}, {})

    case("matmul_broadcast_const_rank3", """
  input %x : f32[?, 1, 3, 4]
  %y = matmul %x, @w
  output %y
""", mm_const3)

    def mm_left_matrix(r):
        c = {"a": randn(r, 3, 4)}
        return ({"x": randn(r, 2, 4, 6)}, c, lambda i: {"y": matmul(c["a"], i["x"])}, {})

    case("matmul_matrix_by_batch", """
  input %x : f32[?, 4, 6]
  %y = matmul @a, %x
  output %y
""", mm_left_matrix)

    # combinations
    def mlp(r):
        c = {"fc1.weight": weight(r, 32, 64), "fc1.bias": randn(r, 32, scale=0.1),
             "fc2.weight": weight(r, 10, 32), "fc2.bias": randn(r, 10, scale=0.1)}

        def ref(i):
            h = relu(linear(i["x"], c["fc1.weight"], c["fc1.bias"]))
            return {"p": softmax(linear(h, c["fc2.weight"], c["fc2.bias"]))}
        return ({"x": randn(r, 8, 64)}, c, ref, {})

    case("mlp", """
  input %x : f32[?, 64]
  %h = linear %x, @fc1.weight, @fc1.bias
  %a = relu %h
  %z = linear %a, @fc2.weight, @fc2.bias
  %p = softmax %z
  output %p
""", mlp)

    def attention(r):
        d, t = 16, 6
        c = {"wq": weight(r, d, d), "wk": weight(r, d, d), "wv": weight(r, d, d),
             "scale": np.full(t, 1 / math.sqrt(d), dtype=F32)}

        def ref(i):
            q = matmul(i["x"], c["wq"])
            k = matmul(i["x"], c["wk"])
            v = matmul(i["x"], c["wv"])
            s = mul(matmul(q, transpose(k, (0, 2, 1))), c["scale"])
            p = softmax(s)
            return {"p": p, "o": matmul(p, v)}
        return ({"x": randn(r, 3, t, d)}, c, ref, {})

    case("attention_block", """
  input %x : f32[?, 6, 16]
  %q = matmul %x, @wq
  %k = matmul %x, @wk
  %v = matmul %x, @wv
  %kt = transpose %k {perm = [0, 2, 1]}
  %s = matmul %q, %kt
  %ss = mul %s, @scale
  %p = softmax %ss
  %o = matmul %p, %v
  output %o
  output %p
""", attention)

    def ln_gelu(r):
        c = {"ln.gamma": 1 + randn(r, 32, scale=0.1), "ln.beta": randn(r, 32, scale=0.1),
             "proj.weight": weight(r, 32, 32)}

        def ref(i):
            g = gelu(layernorm(i["x"], c["ln.gamma"], c["ln.beta"], 1e-5))
            return {"y": add(linear(g, c["proj.weight"]), i["x"])}
        return ({"x": randn(r, 4, 32)}, c, ref, {"batch": 4})

    case("layernorm_gelu_residual", """
  input %x : f32[?, 32]
  %n = layernorm %x, @ln.gamma, @ln.beta {eps = 1e-5}
  %g = gelu %n
  %p = linear %g, @proj.weight
  %y = add %p, %x
  output %y
""", ln_gelu)

    def two_in_two_out(r):
        c = {"w": weight(r, 8, 8)}

        def ref(i):
            s = add(i["a"], i["b"])
            lin = linear(s, c["w"])
            flat = lin.reshape(lin.shape[0], 32)
            return {"s": s, "r": transpose(flat.reshape(lin.shape[0], 4, 8))}
        return ({"a": randn(r, 2, 4, 8), "b": randn(r, 4, 8)}, c, ref, {})

    case("two_inputs_two_outputs", """
  input %a : f32[?, 4, 8]
  input %b : f32[4, 8]
  %s = add %a, %b
  %l = linear %s, @w
  %f = reshape %l {shape = [?, 32]}
  %u = reshape %f {shape = [?, 4, 8]}
  %r = transpose %u
  output %s
  output %r
""", two_in_two_out)

    return out


# ---- running ----


def write_case(d, c):
    lines = ["; " + c.name, "model t {"]
    if c.consts:
        lines.append('  weights "t.safetensors"')
        q8test.write_safetensors(os.path.join(d, "t.safetensors"), c.consts)
    text = "\n".join(lines) + c.body + "}\n"
    path = os.path.join(d, "model.ir")
    with open(path, "w") as f:
        f.write(text)
    return path


def run_case(q8c, root, c):
    """Returns (ok, detail)."""
    d = os.path.join(root, c.name)
    os.makedirs(d)
    model = write_case(d, c)
    want = c.ref(c.inputs)
    args = ["run", model]
    plain = not c.named and len(c.inputs) == 1 and len(want) == 1
    for name, arr in c.inputs.items():
        p = os.path.join(d, f"in_{name}.npy")
        np.save(p, arr)
        args += ["-i", p if plain else f"{name}={p}"]
    outs = {}
    for name in want:
        outs[name] = os.path.join(d, f"out_{name}.npy")
        args += ["-o", outs[name] if plain else f"{name}={outs[name]}"]
    if c.batch is not None:
        args += ["--batch", c.batch]
    proc = q8test.run(q8c, *args, check=False)
    if proc.returncode != 0:
        return False, f"q8c exited with {proc.returncode}: {proc.stderr.strip()}"
    details = []
    for name, ref in want.items():
        if not os.path.exists(outs[name]):
            return False, f"no output file for %{name}"
        got = np.load(outs[name])
        if got.dtype != F32 or got.shape != ref.shape:
            return False, f"%{name} is {got.dtype}{list(got.shape)}, want float32{list(ref.shape)}"
        if not np.allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True):
            err = np.abs(got.astype(np.float64) - ref)
            return False, f"%{name} differs: max abs error {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
        details.append(f"%{name}{list(ref.shape)}")
    return True, " ".join(details)


def check_wrong_shape(q8c, root):
    """A mismatched input is refused with a message naming both shapes."""
    d = os.path.join(root, "wrong_shape")
    os.makedirs(d)
    model = os.path.join(d, "model.ir")
    with open(model, "w") as f:
        f.write("model t {\n  input %x : f32[?, 64]\n  %y = relu %x\n  output %y\n}\n")
    x = os.path.join(d, "x.npy")
    np.save(x, np.zeros((3, 65), dtype=F32))
    proc = q8test.run(q8c, "run", model, "-i", x, "-o", os.path.join(d, "y.npy"), check=False)
    want = "input 'x' has shape [3, 65] but the model expects f32[3, 64]"
    if proc.returncode == 0:
        return False, "q8c accepted a [3, 65] input for f32[?, 64]"
    if want not in proc.stderr:
        return False, f"stderr does not say {want!r}: {proc.stderr.strip()}"
    return True, ""


def main():
    if len(sys.argv) != 2:
        print("usage: test_interp_ops.py /path/to/q8c", file=sys.stderr)
        return 2
    q8c = sys.argv[1]
    root = q8test.tmpdir("q8c-interp-")
    tally = q8test.Tally()
    for c in cases():
        try:
            ok, detail = run_case(q8c, root, c)
        except Exception as e:  # one broken case must not hide the others
            ok, detail = False, f"{type(e).__name__}: {e}"
        tally.record(c.name, ok, detail)
    try:
        ok, detail = check_wrong_shape(q8c, root)
    except Exception as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    tally.record("wrong_input_shape", ok, detail)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
