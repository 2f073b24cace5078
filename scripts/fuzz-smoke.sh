#!/usr/bin/env bash
# CI's short fuzzing run: build the libFuzzer targets (fuzz/build.sh) and run
# each for $Q8_FUZZ_SECONDS seconds (default 60) from its seed corpus, as
# many at a time as there are CPUs (each target runs one process). Any crash, sanitizer report, failed property, leak or hang
# fails the script; the input that caused it is in $Q8_FUZZ_WORK/artifacts
# (default /tmp/q8c-fuzz-smoke). Needs clang-19 and libclang-rt-19-dev.
#
#   bash scripts/fuzz-smoke.sh [BUILD_DIR]       # default build-fuzz/
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${Q8_FUZZ_SECONDS:-60}
export Q8_FUZZ_WORK=${Q8_FUZZ_WORK:-/tmp/q8c-fuzz-smoke}
bash fuzz/build.sh "$build"
rm -rf "$Q8_FUZZ_WORK"
run_one() { # TARGET: its run, its log; the exit status is the run's
  bash fuzz/run.sh "$1" "$seconds" "$build" >"$Q8_FUZZ_WORK/$1.log" 2>&1
}
mkdir -p "$Q8_FUZZ_WORK"
targets=(parse safetensors npy pipeline onnx)
jobs=$(nproc)
declare -A status
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch=("${targets[@]:i:jobs}")
  declare -A pid=()
  for t in "${batch[@]}"; do
    run_one "$t" &
    pid[$t]=$!
  done
  for t in "${batch[@]}"; do
    if wait "${pid[$t]}"; then status[$t]=0; else status[$t]=1; fi
  done
done
failed=0
for t in "${targets[@]}"; do
  log="$Q8_FUZZ_WORK/$t.log"
  echo "== fuzz_$t: $seconds s"
  if [ "${status[$t]}" = 0 ]; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log" || true
  else
    failed=1
    echo "fuzz_$t FAILED; last lines of $log:"
    tail -40 "$log"
    ls "$Q8_FUZZ_WORK/artifacts" 2>/dev/null | grep "^$t-" | sed "s|^|  artifact: $Q8_FUZZ_WORK/artifacts/|"
  fi
done
exit $failed
