"""Shared pieces of the Python benchmark scripts in bench/ (floatops.py,
nf4.py, f32gemm.py, rtshape.py, wformat.py, calib_mlp.py, nf4_accuracy.py,
attention.py):
the command line (a q8c path and --name value options), a subprocess helper
that stops the script when a command fails, libq8rt loaded through ctypes
with its functions' argument types, and a compiled model loaded through
q8rt_load with its input and output buffers, timed by the calling thread's
CPU time (CLOCK_THREAD_CPUTIME_ID, which other processes' time slices on a
busy machine do not inflate) and by wall time. A script imports it by
putting its own folder on sys.path:

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import benchpy
"""
import ctypes
import os
import subprocess
import sys
import time

import numpy as np


def parse_args(argv=None):
    """(q8c path, {"--name": value}, [other arguments]) from the command
    line: every --name takes the next argument as its value; the first other
    argument is q8c's path (default build/q8c), made absolute."""
    opts, args = {}, []
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv:
        a = argv.pop(0)
        if a.startswith("--"):
            opts[a] = argv.pop(0)
        else:
            args.append(a)
    return os.path.abspath(args[0] if args else "build/q8c"), opts, args


def run(cmd, env=None, timeout=1200):
    """Run cmd (with env's variables added to this process's environment);
    its stdout, or exit with its stderr when it fails."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    if r.returncode != 0:
        sys.exit("%s failed:\n%s" % (" ".join(cmd), r.stderr))
    return r.stdout


def load_rt(q8c_path):
    """libq8rt.so from q8c's folder, with the argument types of q8rt_load,
    q8rt_run, q8rt_run_dims, q8rt_free and q8rt_set_threads."""
    rt = ctypes.CDLL(os.path.join(os.path.dirname(q8c_path), "libq8rt.so"))
    rt.q8rt_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                             ctypes.c_size_t]
    rt.q8rt_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    rt.q8rt_run_dims.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                 ctypes.c_char_p, ctypes.c_size_t]
    rt.q8rt_free.argtypes = [ctypes.c_void_p]
    rt.q8rt_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
                                    ctypes.c_size_t]
    return rt


class Model:
    """A compiled model loaded through libq8rt, with its input and output
    buffers. x: the input array, or a list of them; y_shape_or_n: the
    output's shape, or its columns (rows as x's first input), or None for
    x's shape; threads: passed to q8rt_set_threads when given."""

    def __init__(self, rt, path, x, y_shape_or_n=None, threads=None):
        self.rt = rt
        self.m = ctypes.c_void_p()
        self.err = ctypes.create_string_buffer(512)
        if rt.q8rt_load(path.encode(), ctypes.byref(self.m), self.err, 512) != 0:
            sys.exit("q8rt_load %s: %s" % (path, self.err.value.decode()))
        if threads is not None and rt.q8rt_set_threads(self.m, threads, self.err, 512) != 0:
            sys.exit("q8rt_set_threads: " + self.err.value.decode())
        self.xs = [np.ascontiguousarray(a) for a in (x if isinstance(x, list) else [x])]
        self.x = self.xs[0]
        if y_shape_or_n is None:
            self.y = np.empty_like(self.x)
        elif isinstance(y_shape_or_n, int):
            self.y = np.empty((self.x.shape[0], y_shape_or_n), np.float32)
        else:
            self.y = np.empty(y_shape_or_n, np.float32)
        self.ins = (ctypes.c_void_p * len(self.xs))(*[a.ctypes.data for a in self.xs])
        self.outs = (ctypes.c_void_p * 1)(self.y.ctypes.data)

    def run(self):
        """One q8rt_run."""
        if self.rt.q8rt_run(self.m, len(self.xs), self.ins, 1, self.outs, self.err, 512) != 0:
            sys.exit("q8rt_run: " + self.err.value.decode())

    def time(self, runs, warmup=3):
        """Medians of (thread CPU ms, wall ms) over `runs` runs after
        `warmup` untimed ones."""
        cpu, wall = [], []
        for i in range(warmup + runs):
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            self.run()
            c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
            if i >= warmup:
                cpu.append((c1 - c0) / 1e6)
                wall.append((w1 - w0) / 1e6)
        return float(np.median(cpu)), float(np.median(wall))
