"""Regenerate the bundled example: mlp.safetensors, input.npy and calib.npy.

The weights follow PyTorch's nn.Linear initialisation (uniform in
+-1/sqrt(in_features)), so the example behaves like a freshly built model;
the input is a batch of 4 standard-normal rows and the calibration set 256
more. Deterministic (seed 0).
Usage: /usr/bin/python3 make_example.py   (writes next to this script)
"""
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors):
    # Kept here rather than imported from tests/ so the example stands alone.
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def linear(rng, n_out, n_in):
    bound = 1.0 / np.sqrt(n_in)
    return (rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
            rng.uniform(-bound, bound, n_out).astype(np.float32))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(0)
    w1, b1 = linear(rng, 256, 64)
    w2, b2 = linear(rng, 10, 256)
    write_safetensors(os.path.join(here, "mlp.safetensors"),
                      {"fc1.weight": w1, "fc1.bias": b1, "fc2.weight": w2, "fc2.bias": b2})
    np.save(os.path.join(here, "input.npy"), rng.standard_normal((4, 64)).astype(np.float32))
    np.save(os.path.join(here, "calib.npy"), rng.standard_normal((256, 64)).astype(np.float32))


if __name__ == "__main__":
    main()
