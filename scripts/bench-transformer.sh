#!/usr/bin/env bash
# Run bench/transformer.py: q8c on the reference transformers
# (examples/transformers) beside ONNX Runtime (npm's onnxruntime-node) and
# PyTorch, in one interleaved run, one thread. The peers are benchmark-only:
# onnxruntime-node is installed under build/peers (its package carries the
# CPU binaries, so its install script, which fetches GPU ones, is skipped);
# q8c never links or loads it.
#
#   bash scripts/bench-transformer.sh                     # small GPT-2, BERT, LLaMA
#   bash scripts/bench-transformer.sh --arch gpt2 --rounds 11
#   bash scripts/bench-transformer.sh --size tiny         # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-peer.sh
# PyTorch's fp32 peer needs an optimized BLAS: Debian's python3-torch calls
# libblas.so.3, the reference BLAS unless OpenBLAS is installed.
bench_peer_install libopenblas0-pthread "the BLAS of the PyTorch peer"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target q8c
if [ ! -d build/peers/node_modules/onnxruntime-node ]; then
  mkdir -p build/peers
  npm install --prefix build/peers --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0
fi
exec /usr/bin/python3 bench/transformer.py --node-path build/peers/node_modules "$@"
