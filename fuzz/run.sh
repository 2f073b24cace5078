#!/usr/bin/env bash
# Run one libFuzzer target for a while (built by fuzz/build.sh):
#
#   bash fuzz/run.sh TARGET [SECONDS] [BUILD_DIR]
#   bash fuzz/run.sh pipeline 3600          # an hour of the whole pipeline
#
# TARGET is parse, safetensors, npy, pipeline or onnx; SECONDS defaults to 600 and
# BUILD_DIR to build-fuzz. The growing corpus is kept in $Q8_FUZZ_WORK/TARGET
# (default /tmp/q8c-fuzz), seeded from fuzz/corpus/TARGET, so later runs go on
# from where this one stopped; crashes, timeouts and leaks are written to
# $Q8_FUZZ_WORK/artifacts/. A crash becomes a regression test by copying its
# file into fuzz/regress/TARGET/ (name it after the bug): ctest then replays
# it (fuzz.TARGET) in every build. Extra arguments after BUILD_DIR go to
# libFuzzer (-jobs=N, -dict=..., -max_len=...).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [BUILD_DIR] [libFuzzer options]}
seconds=${2:-600}
build=${3:-build-fuzz}
shift $(( $# < 3 ? $# : 3 ))
work=${Q8_FUZZ_WORK:-/tmp/q8c-fuzz}
bin=$build/fuzz/fuzz_$target
if [ ! -x "$bin" ]; then
  echo "$bin not found: run bash fuzz/build.sh $build first" >&2
  exit 2
fi
mkdir -p "$work/$target" "$work/artifacts"
# -timeout: one input taking longer is a hang. -rss_limit_mb: the targets
# cap tensors at 64 MiB (Q8_MAX_TENSOR_BYTES), so more means a leak or an
# unbounded allocation. Model text and files stay small: -max_len 16384.
exec "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/$target-" "$@" \
  "$work/$target" "fuzz/corpus/$target"
