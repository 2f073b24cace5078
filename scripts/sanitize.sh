#!/usr/bin/env bash
# The test suite under sanitizers, in a second build directory.
#
#   bash scripts/sanitize.sh [address] [BUILD_DIR]   # default build-asan/
#   bash scripts/sanitize.sh thread [BUILD_DIR]      # default build-tsan/
#
# address: the whole ctest suite built with AddressSanitizer (LeakSanitizer
# included) and UndefinedBehaviorSanitizer, -fno-sanitize-recover=all: any
# report fails the test that made it, and so this script. Q8_TEST_QUICK=1 is
# set: the heaviest sweeps (unit.test_kernels) run a subset of their cases,
# since instrumented code is 2-5x slower.
#
# thread: the tests that use threads (unit.test_concurrency: several
# threads compiling with the JIT and running models; unit.test_runtime: the
# thread pool, concurrent q8rt_run) built with ThreadSanitizer.
#
# What the sanitizers cannot see: libLLVM is not instrumented (its own
# memory errors and races are invisible; a race inside it would show only as
# a wrong result or a crash), and neither is code the JIT generates, nor a
# model .so's generated functions (the reference ops they call from
# libq8support.a are instrumented). docs/reliability.md says more.
#
# CC picks the compiler (default gcc; clang-19 works too).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=address
case "${1:-}" in
  address|thread) mode=$1; shift ;;
esac
if [ "$mode" = thread ]; then
  build=${1:-build-tsan}
  san=thread
else
  build=${1:-build-asan}
  san=address,undefined
fi
flags="-fsanitize=$san -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQ8_WERROR="${Q8_WERROR:-OFF}" \
  -DQ8_BENCH=OFF -DCMAKE_C_COMPILER="${CC:-gcc}" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$san" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=$san" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=$san" >/dev/null
if [ "$mode" = thread ]; then
  cmake --build "$build" -j"$(nproc)" --target test_concurrency test_runtime
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
  ctest --test-dir "$build" --output-on-failure -R 'unit\.test_(concurrency|runtime)$'
  exit
fi
cmake --build "$build" -j"$(nproc)"
# Leak checking is on by default on x86_64 Linux. allocator_may_return_null:
# the library reports a failed allocation as an error, and tests check that
# (without it ASan aborts on a request it cannot serve).
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export Q8_TEST_QUICK=1
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
