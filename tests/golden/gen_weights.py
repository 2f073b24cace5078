"""Write the well-formed weights files the golden tests use into DIR.

Run by run_golden.py into a scratch copy of tests/golden, so the repository
holds only this script, not megabytes of random floats. (The deliberately
corrupt files in weights/ are small and committed; gen_bad_weights.py makes
them.) Usage: gen_weights.py DIR
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
from q8test import write_safetensors  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    write_safetensors(os.path.join(out, "mlp.safetensors"), {
        "fc1.weight": rand(256, 64), "fc1.bias": rand(256),
        "fc2.weight": rand(10, 256), "fc2.bias": rand(10)})
    np.save(os.path.join(out, "mlp_calib.npy"), rand(64, 64))
    np.save(os.path.join(out, "bad_calib.npy"), rand(5, 63))
    write_safetensors(os.path.join(out, "mnist.safetensors"), {
        "fc1.weight": np.zeros((256, 700), np.float32), "fc1.bias": rand(256)})
    write_safetensors(os.path.join(out, "ops.safetensors"), {
        "w": rand(16, 8), "b": rand(16), "v": rand(16),
        "gamma": rand(16), "beta": rand(16), "m": rand(16, 4), "m2": rand(16, 4),
        "q": rng.integers(-127, 128, (16, 8)).astype(np.int8)})
    # The transformer shape ops: an embedding table, an I64 tensor used as
    # ids, and unused tensors of dtypes q8c does not take (skipped).
    write_safetensors(os.path.join(out, "shape.safetensors"), {
        "wte": rand(50, 16), "gamma": rand(16), "w3": rand(48, 16),
        "pos": np.arange(8, dtype=np.int64).reshape(1, 8),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "f64": np.zeros(3, np.float64)})


if __name__ == "__main__":
    main()
