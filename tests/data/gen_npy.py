#!/usr/bin/python3
"""gen_npy.py: write the .npy fixtures that tests/unit/test_npy.c reads.

The fixtures are produced by numpy itself, so that the C reader is checked
against the real format rather than against q8c's own writer. Their values
follow simple formulas that test_npy.c recomputes, so each element is checked
exactly. The outputs are committed; rerun this script only to change them:

    /usr/bin/python3 tests/data/gen_npy.py

Every file stays well under 4 KiB.
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "npy")


def path(name):
    return os.path.join(OUT, name)


def save_version(name, array, version):
    # np.save picks the oldest version that fits; write_array forces one.
    with open(path(name), "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def main():
    os.makedirs(OUT, exist_ok=True)

    # f4, 2-D: element i is (i - 5) * 0.25, exact in binary.
    f4 = ((np.arange(12) - 5) * 0.25).astype("<f4").reshape(3, 4)
    np.save(path("f4_2d.npy"), f4)

    # f8, 3-D: element i is i / 3, which is inexact, so the f8 -> f32 rounding
    # is checked too; element 0 is -0.0 and element 1 is a tiny subnormal f64
    # that rounds to 0 in f32.
    f8 = (np.arange(24, dtype="<f8") / 3.0).reshape(2, 3, 4)
    f8.flat[0] = -0.0
    f8.flat[1] = 1e-300
    np.save(path("f8_3d.npy"), f8)

    np.save(path("u1.npy"), np.array([0, 1, 127, 128, 255], dtype="|u1"))
    np.save(path("i1.npy"), np.array([-128, -1, 0, 1, 127], dtype="|i1"))
    np.save(path("i4.npy"),
            np.array([[-2147483648, -1, 0], [1, 2147483647, 123456789]], dtype="<i4"))

    # A 0-d array: shape ().
    np.save(path("scalar.npy"), np.array(3.5, dtype="<f4"))

    # Versions 2.0 (u32 header length) and 3.0 (utf-8 header).
    save_version("v2.npy", np.array([1.5, -2.5, 1e30, -1e-30], dtype="<f4"), (2, 0))
    save_version("v3.npy", np.array([7, -7, 65536], dtype="<i4"), (3, 0))

    # Files the reader must refuse.
    np.save(path("big_endian.npy"), np.arange(4, dtype=">f4"))
    np.save(path("fortran.npy"), np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
    np.save(path("bool.npy"), np.array([True, False]))
    np.save(path("object.npy"), np.array([1, "a"], dtype=object), allow_pickle=True)

    # The f4 2-D file with its last 5 data bytes cut off.
    with open(path("f4_2d.npy"), "rb") as f:
        whole = f.read()
    with open(path("truncated.npy"), "wb") as f:
        f.write(whole[:-5])


if __name__ == "__main__":
    main()
