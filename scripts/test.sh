#!/usr/bin/env bash
# The README's second command: build q8c (if needed) and run the whole test
# suite: cmocka unit tests, golden files and numpy cross-checks, via CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
