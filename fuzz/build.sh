#!/usr/bin/env bash
# Build the libFuzzer binaries (fuzz/CMakeLists.txt) with clang-19 and
# AddressSanitizer + UndefinedBehaviorSanitizer, into $1 (default
# build-fuzz/): fuzz_parse, fuzz_safetensors, fuzz_npy, fuzz_pipeline in
# $1/fuzz/. Needs: apt-get install clang-19 libclang-rt-19-dev.
#
# Run one (docs/reliability.md has the long-run commands):
#   build-fuzz/fuzz/fuzz_parse -max_total_time=60 /tmp/corpus-parse fuzz/corpus/parse
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
cc=${CC:-clang-19}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$flags" -DQ8_FUZZ=ON -DQ8_BENCH=OFF \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_parse fuzz_safetensors fuzz_npy fuzz_pipeline fuzz_onnx
