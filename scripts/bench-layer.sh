#!/usr/bin/env bash
# Run the transformer-layer benchmark (bench/layerbench.c): a BERT-base
# encoder layer and a GPT-2-small decoder layer (T 128, batch 1), q8c static
# and dynamic int8 against oneDNN's int8 and f32 layers, primitive by
# primitive, in one run on this machine (any x86-64 CPU: q8c compiles for
# --target=native). oneDNN is a benchmark-only dependency (Debian's
# libdnnl-dev, installed here if missing); q8c and libq8rt never link it.
#
#   bash scripts/bench-layer.sh                          # both cases, 1 thread
#   bash scripts/bench-layer.sh --threads 1,2 --rounds 21   # arguments go to layerbench
#   bash scripts/bench-layer.sh --cases gpt2 --no-breakdown
#
# It prints the tables and writes layerbench.json (see --help).
# Q8_BENCH_BUILD_ONLY=1 builds it and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-peer.sh
bench_peer_install libdnnl-dev "oneDNN, the peer"
# Release flags for the q8c side too (the generated code does not depend on
# them, but the runtime's thread pool and the driver do).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQ8_BENCH=ON >/dev/null
cmake --build build -j"$(nproc)" --target layerbench q8c
if [ "${Q8_BENCH_BUILD_ONLY:-0}" = 1 ]; then exit 0; fi
exec build/bench/layerbench "$@"
