#!/usr/bin/env bash
# The README's first command: install the dependencies, build q8c, and run the
# main job on the bundled example: calibrate and quantize the float MLP on
# its samples, report the accuracy of each int8 layer, compile it to a
# self-contained model library for this CPU, and run that library on the
# bundled input, beside the float model run by the reference interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
set -x
build/q8c examples/mlp/mlp.ir --calib examples/mlp/calib.npy --batch 4 --report -o build/mlp.so
build/q8c run build/mlp.so -i examples/mlp/input.npy
build/q8c run examples/mlp/mlp.ir -i examples/mlp/input.npy
