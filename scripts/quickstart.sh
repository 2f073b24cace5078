#!/usr/bin/env bash
# The README's first command: install the dependencies, build q8c, and run it
# on the bundled example model: print its shape-inferred IR, then run it on
# the bundled input with the reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
set -x
build/q8c examples/mlp/mlp.ir --emit=ir
build/q8c run examples/mlp/mlp.ir -i examples/mlp/input.npy
