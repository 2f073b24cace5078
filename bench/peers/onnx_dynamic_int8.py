#!/usr/bin/python3
"""Rewrite an ONNX model's MatMuls the way ONNX Runtime's quantize_dynamic
does, for bench/transformer.py's ONNX Runtime int8 peer (benchmark-only).

Every MatMul whose right operand is a float initializer B [K, N] becomes

    x -> DynamicQuantizeLinear -> (xq u8, xs, xz)
    MatMulInteger(xq, Bq, xz, 0) -> Cast(float) -> Mul(xs * Bs)

with Bq = round(B / Bs) in int8, Bs = max|B| / 127 (symmetric per tensor,
quantize_dynamic's defaults: QInt8 weights, per_channel=False,
reduce_range=False). ONNX Runtime's graph optimizer then fuses the chain into
its DynamicQuantizeMatMul / MatMulIntegerToFloat kernels. MatMuls of two
activations (attention) stay float, as quantize_dynamic leaves them.

  /usr/bin/python3 onnx_dynamic_int8.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def rewrite(model):
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    count = 0
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if b.ndim != 2:
            nodes.append(node)
            continue
        p = f"{node.name or node.output[0]}_q"
        scale = np.float32(max(np.abs(b).max(), 1e-12) / 127.0)
        bq = np.clip(np.rint(b / scale), -127, 127).astype(np.int8)
        graph.initializer.extend([
            numpy_helper.from_array(bq, p + "_B"),
            numpy_helper.from_array(np.array(scale, np.float32), p + "_Bs"),
            numpy_helper.from_array(np.array(0, np.int8), p + "_Bz"),
        ])
        x = node.input[0]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [x], [p + "_xq", p + "_xs", p + "_xz"]),
            helper.make_node("MatMulInteger", [p + "_xq", p + "_B", p + "_xz", p + "_Bz"],
                             [p + "_acc"]),
            helper.make_node("Cast", [p + "_acc"], [p + "_accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "_xs", p + "_Bs"], [p + "_s"]),
            helper.make_node("Mul", [p + "_accf", p + "_s"], [node.output[0]]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    # The float weights the rewrite replaced are no longer read.
    used = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = onnx.load(sys.argv[1])
    n = rewrite(model)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[2])
    print(f"{sys.argv[2]}: {n} MatMuls rewritten to DynamicQuantizeLinear + MatMulInteger")


if __name__ == "__main__":
    main()
