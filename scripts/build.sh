#!/usr/bin/env bash
# Configure and build q8c into build/ (Q8_WERROR=ON turns warnings into errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQ8_WERROR="${Q8_WERROR:-OFF}" >/dev/null
cmake --build build -j"$(nproc)"
