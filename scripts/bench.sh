#!/usr/bin/env bash
# Run the benchmark (bench/q8bench.c): q8c's compiled int8 layers and MLP
# against oneDNN's int8 and f32 matmuls, in one run on this machine. oneDNN
# is a benchmark-only dependency (Debian's libdnnl-dev, installed here if
# missing); q8c and libq8rt never link it.
#
#   bash scripts/bench.sh                       # every case, 1 and 2 threads
#   bash scripts/bench.sh --cases mlp --rounds 31   # arguments go to q8bench
#
# It prints the comparison table and writes q8bench.json (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-peer.sh
bench_peer_install libdnnl-dev "oneDNN, the peer"
# Release flags for the q8c side too (the generated code does not depend on
# them, but the runtime's thread pool and the driver do).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQ8_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" --target q8bench q8c
# Q8_BENCH_BUILD_ONLY=1: build it and stop (CI on a CPU it cannot run on).
if [ "${Q8_BENCH_BUILD_ONLY:-0}" = 1 ]; then exit 0; fi
exec build/bench/q8bench "$@"
