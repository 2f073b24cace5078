#!/usr/bin/env bash
# The whole test suite under AddressSanitizer, LeakSanitizer and
# UndefinedBehaviorSanitizer: a second build (default build-asan/, or $1) with
# -fsanitize=address,undefined -fno-sanitize-recover=all, then the same ctest
# suite as scripts/test.sh. Any report fails the test that made it, and so
# this script. CC picks the compiler (default gcc; clang-19 works too).
#
#   bash scripts/sanitize.sh                 # build-asan/ in the repository
#   bash scripts/sanitize.sh /tmp/build-asan # elsewhere
#
# Q8_TEST_QUICK=1 is set for the tests: the heaviest sweeps (unit.test_kernels)
# run a subset of their cases, since instrumented code is 2-5x slower. Models
# compiled to .so by the tests link the instrumented libq8support.a and are
# loaded into instrumented processes only; JIT'd code is not instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-asan}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQ8_WERROR="${Q8_WERROR:-OFF}" \
  -DCMAKE_C_COMPILER="${CC:-gcc}" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j"$(nproc)"
# detect_leaks is on by default on x86_64 Linux; say so for clarity. The
# suppressions file lists only one-time allocations inside libLLVM.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export Q8_TEST_QUICK=1
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
