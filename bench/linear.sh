#!/bin/sh
# bench/linear.sh — time the closed-form linear advance (ns per call) in a release build.
# Usage: bench/linear.sh [BUILD_DIR]   (default: build-bench, configured with buildtype=release)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-bench"}
if [ ! -d "$build" ]; then
    meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 tests/unit/pred/bench_linear >/dev/null
"$build/tests/unit/pred/bench_linear"
