"""Write the deliberately corrupt safetensors files of the golden tests.

Each file holds a tensor "w" (an f32[2], what the err_st_*.ir models add to
their input) that is plausible except for one defect, so that loading it
triggers exactly one of the reader's errors (frontend/safetensors.c):

  truncated.safetensors       5 bytes: file is too short to be safetensors
  bad_header_len.safetensors  header length 4096 is past the end of the file
  bad_json.safetensors        invalid JSON header (a missing ',')
  bad_offsets.safetensors     data_offsets past the end of the data
  overlap.safetensors         tensors 'w' and 'b' overlap in the data
  bad_size.safetensors        data_offsets span 4 bytes but F32[2] needs 8
  bad_dtype.safetensors       unknown dtype 'Q4'

The files are small and committed as fixtures in tests/golden/weights/; the
output is byte-for-byte deterministic, so rerunning this script changes
nothing. Usage: gen_bad_weights.py [DIR]   (default: weights/ beside it)
"""
import os
import struct
import sys


def f32(*vals):
    return struct.pack("<%df" % len(vals), *vals)


def header_bytes(header):
    """The header text padded with spaces to a multiple of 8, as writers do."""
    raw = header.encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def safetensors(header, data, header_len=None):
    """File bytes; `header_len` overrides the length field to corrupt it."""
    h = header_bytes(header)
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + data


W_OK = '"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}'


def files():
    good = safetensors("{%s}" % W_OK, f32(1.0, -2.0))
    return {
        "truncated.safetensors": good[:5],
        "bad_header_len.safetensors": safetensors("{%s}" % W_OK, f32(1.0, -2.0), header_len=4096),
        "bad_json.safetensors": safetensors(
            '{"w": {"dtype": "F32" "shape": [2], "data_offsets": [0, 8]}}', f32(1.0, -2.0)),
        "bad_offsets.safetensors": safetensors("{%s}" % W_OK, f32(1.0)),
        "overlap.safetensors": safetensors(
            '{%s, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}' % W_OK,
            f32(1.0, -2.0, 3.0)),
        "bad_size.safetensors": safetensors(
            '{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', f32(1.0)),
        "bad_dtype.safetensors": safetensors(
            '{"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}', f32(1.0, -2.0)),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "weights")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(files().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
