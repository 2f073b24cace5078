"""q8test: helpers shared by the Python test scripts in tests/py.

Each script is run by CTest as `python3 tests/py/test_X.py /path/to/q8c`. They
write models, weights and inputs to a temporary directory, run the q8c binary
on them and compare the results with numpy. This module holds what they all
need: safetensors I/O written from the format description (so that the tests
do not trust q8c's own reader to check q8c's own writer), running q8c, scratch
directories, a quantization error measure and the pass/fail tally whose last
line, `N passed, M failed`, every script prints.

Only numpy and the standard library are used.
"""
import atexit
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

# safetensors dtype names for the numpy dtypes q8c reads and writes; F16 and
# F64 are there so tests can feed q8c files it must convert or refuse.
_ST_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_ST_NAMES = {dt: name for name, dt in _ST_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """Write a dict name -> numpy array as a safetensors file.

    Layout: an 8-byte little-endian header length, the JSON header padded with
    spaces to a multiple of 8 bytes (so the data that follows is aligned), then
    each tensor's bytes, row-major little-endian, in the order given.
    """
    header = {}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt not in _ST_NAMES:
            raise ValueError(f"{name}: dtype {arr.dtype} has no safetensors name here")
        data = np.ascontiguousarray(arr, dtype=dt).tobytes()
        header[name] = {
            "dtype": _ST_NAMES[dt],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Read a safetensors file into a dict name -> numpy array (a copy)."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        arr = np.frombuffer(raw[base + start : base + end], dtype=dt)
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def run(q8c, *args, check=True, input=None, timeout=300):
    """Run q8c with `args` (converted to str); return the CompletedProcess with
    text stdout and stderr. With check, a non-zero exit raises RuntimeError
    carrying the command line and both streams, so a failing case says why."""
    cmd = [str(q8c)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


_tmpdirs = []


def _cleanup():
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def tmpdir(prefix="q8c-test-"):
    """A fresh scratch directory, removed when the script exits unless the
    environment sets Q8_KEEP_TMP (then its path is printed, for debugging)."""
    d = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("Q8_KEEP_TMP"):
        print(f"keeping {d}", file=sys.stderr)
    else:
        _tmpdirs.append(d)
    return d


def without_form_note(err):
    """stderr without the note that AVX2 (no VNNI) runs some int8 GEMMs in
    the widened form (driver/formnote.c), which depends on the CPU."""
    return "".join(ln for ln in err.splitlines(True)
                   if not (ln.startswith("q8c: note: ") and "widened vpmaddwd form" in ln))


def sqnr_db(ref, x):
    """Signal-to-quantization-noise ratio of `x` against `ref`, in dB:
    10 log10(sum(ref^2) / sum((ref - x)^2)), computed in float64. Infinite
    when x equals ref exactly."""
    ref = np.asarray(ref, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if ref.shape != x.shape:
        raise ValueError(f"sqnr_db: shapes {ref.shape} and {x.shape} differ")
    noise = float(np.sum((ref - x) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


class Tally:
    """Counts cases and prints one line per case and the summary line.

        t = Tally()
        t.record("linear", ok, "max error 1e-3")
        sys.exit(t.finish())
    """

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = f"{'ok  ' if ok else 'FAIL'} {name}"
        if detail:
            line += f": {detail}"
        print(line, flush=True)
        return ok

    def check(self, name, ok, detail=""):
        """record(), with the detail shown only when the case fails."""
        return self.record(name, ok, "" if ok else detail)

    def skip(self, name, reason):
        """A case that cannot run here, said so rather than passed."""
        self.skipped += 1
        print(f"skip {name}: {reason}", flush=True)

    def finish(self):
        """Print `N passed, M failed[, K skipped]` and return the exit status."""
        tail = f", {self.skipped} skipped" if self.skipped else ""
        print(f"{self.passed} passed, {self.failed} failed{tail}", flush=True)
        return 1 if self.failed or not self.passed else 0


# ---- reading the text IR q8c prints (docs/ir.md) ----

_IR_NODE = re.compile(
    r"^%(?P<name>[\w.]+)\s*(?::\s*(?P<dtype>\w+)\[(?P<dims>[^\]]*)\])?\s*=\s*"
    r"(?P<op>\w+)\s+(?P<ops>[^{]*?)\s*(?:\{(?P<attrs>.*)\})?$"
)
_IR_INPUT = re.compile(r"^input\s+%([\w.]+)\s*:\s*(\w+)\[([^\]]*)\]\s*(?:\{(.*)\})?$")


def _ir_value(text):
    """An attribute value: a number, a [list] of numbers or `?`, or a name
    (an element type such as u8)."""
    text = text.strip()
    if text.startswith("["):
        inner = text[1:-1].strip()
        return [_ir_value(t) for t in inner.split(",")] if inner else []
    if text == "?":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _ir_attrs(text):
    attrs = {}
    for m in re.finditer(r"(\w+)\s*=\s*(\[[^\]]*\]|[^,\s][^,]*)", text or ""):
        attrs[m.group(1)] = _ir_value(m.group(2))
    return attrs


def _ir_type(dtype, dims):
    return dtype, tuple(_ir_value(d) for d in dims.split(",")) if dims.strip() else ()


def parse_ir(text):
    """Parse the text IR as q8c prints it (one statement per line) into a dict:
    {"name", "weights": [paths], "inputs": [{"name", "type", "attrs"}],
     "nodes": [{"name", "type", "op", "operands": [(sigil, name)], "attrs"}],
     "outputs": [names], "output_attrs": {name: attrs}}. A type is (dtype, dims) with None for `?`;
    attribute values are ints, floats, lists or names (dtypes)."""
    mod = {"name": None, "weights": [], "inputs": [], "nodes": [], "outputs": []}
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line == "}":
            continue
        if line.startswith("model "):
            mod["name"] = line.split()[1]
        elif line.startswith("weights "):
            mod["weights"].append(line.split('"')[1])
        elif line.startswith("input "):
            m = _IR_INPUT.match(line)
            mod["inputs"].append(
                {"name": m.group(1), "type": _ir_type(m.group(2), m.group(3)),
                 "attrs": _ir_attrs(m.group(4))}
            )
        elif line.startswith("output "):
            # `output %y {scale = s, zero_point = z, dtype = u8}, %z`
            for m in re.finditer(r"%([\w.]+)\s*(?:\{([^}]*)\})?", line[7:]):
                mod["outputs"].append(m.group(1))
                mod.setdefault("output_attrs", {})[m.group(1)] = _ir_attrs(m.group(2))
        else:
            m = _IR_NODE.match(line)
            if not m:
                raise ValueError(f"parse_ir: cannot read line: {raw!r}")
            ops = [t.strip() for t in m.group("ops").split(",") if t.strip()]
            mod["nodes"].append(
                {
                    "name": m.group("name"),
                    "type": _ir_type(m.group("dtype"), m.group("dims")) if m.group("dtype") else None,
                    "op": m.group("op"),
                    "operands": [(t[0], t[1:]) for t in ops],
                    "attrs": _ir_attrs(m.group("attrs")),
                }
            )
    return mod


def pytorch_linear(rng, n_in, n_out):
    """Weight [n_out, n_in] and bias [n_out] as torch.nn.Linear initialises
    them: uniform(-1/sqrt(n_in), 1/sqrt(n_in)), float32."""
    bound = 1.0 / math.sqrt(n_in)
    w = rng.uniform(-bound, bound, size=(n_out, n_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, size=(n_out,)).astype(np.float32)
    return w, b


def stats(ref, x):
    """(SQNR dB, max abs error, cosine similarity) of x against ref in float64,
    with the conventions of q8c's report: SQNR inf for an exact x (NaN when ref
    is all zero too); cosine 1 when both are all zero, 0 when only one is."""
    ref = np.asarray(ref, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64).ravel()
    err2 = float(np.sum((ref - x) ** 2))
    ref2 = float(np.sum(ref**2))
    x2 = float(np.sum(x**2))
    if err2 == 0:
        sqnr = math.nan if ref2 == 0 else math.inf
    else:
        sqnr = 10.0 * math.log10(ref2 / err2) if ref2 > 0 else -math.inf
    if ref2 == 0 and x2 == 0:
        cos = 1.0
    elif ref2 == 0 or x2 == 0:
        cos = 0.0
    else:
        cos = float(np.sum(ref * x)) / math.sqrt(ref2 * x2)
    maxerr = float(np.max(np.abs(ref - x))) if ref.size else 0.0
    return sqnr, maxerr, cos


# ---- the instruction-set variants (codegen/isa.def, through q8c --list-targets) ----


class Target:
    """One row of `q8c --list-targets`: a variant's name, its architecture
    ("x86_64" or "aarch64") and whether the CPU running q8c executes it."""

    def __init__(self, name, arch, runs_here):
        self.name, self.arch, self.runs_here = name, arch, runs_here

    def __repr__(self):
        return "Target(%r, %r, %r)" % (self.name, self.arch, self.runs_here)


def list_targets(q8c, env=None):
    """The variants of the table, best first, as q8c lists them (env: extra
    environment variables, e.g. Q8_CPU_FEATURES). Raises ValueError on a line
    that is not `NAME ARCH runs-here|-`, so a change of the format fails
    the tests that read it instead of leaving them with no variants."""
    e = dict(os.environ)
    e.update(env or {})
    proc = subprocess.run([str(q8c), "--list-targets"], capture_output=True, text=True, env=e,
                          timeout=60)
    if proc.returncode != 0:
        raise RuntimeError("q8c --list-targets exited with %d:\n%s" % (proc.returncode,
                                                                       proc.stderr))
    rows = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[2] not in ("runs-here", "-"):
            raise ValueError("q8c --list-targets: cannot read line %r" % line)
        rows.append(Target(fields[0], fields[1], fields[2] == "runs-here"))
    if not rows:
        raise ValueError("q8c --list-targets listed no variant")
    return rows


def check_expectations(tally, what, names, table):
    """Every variant in `names` (rows of --list-targets) has an entry in
    `table` (a test's expectations keyed by variant name), and the table names
    no variant that is not there: a new row of codegen/isa.def cannot go
    untested silently, nor an expectation outlive its variant."""
    missing = [n for n in names if n not in table]
    stale = [n for n in table if n not in names]
    tally.check("%s: an expectation for every variant (%s)" % (what, ", ".join(names)),
                not missing and not stale,
                "no expectation for %s%s" % (missing, "; no such variant: %s" % stale
                                             if stale else ""))
