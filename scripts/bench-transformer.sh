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
# PyTorch's fp32 peer needs an optimized BLAS: Debian's python3-torch calls
# libblas.so.3, which is the reference BLAS unless OpenBLAS is installed.
if ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing: libopenblas0-pthread (for the PyTorch peer)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libopenblas0-pthread
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target q8c
if [ ! -d build/peers/node_modules/onnxruntime-node ]; then
  mkdir -p build/peers
  npm install --prefix build/peers --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0
fi
exec /usr/bin/python3 bench/transformer.py --node-path build/peers/node_modules "$@"
