#!/bin/sh
# bench/map.sh — one patient: MAP plus a 4 strengths x 3 intervals search with target
# attainment probabilities; limits 50 ms (1-cmt analytic) and 500 ms (2-cmt ODE).
# Usage: bench/map.sh [BUILD_DIR]   (default: build-bench, configured with buildtype=release)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-bench"}
if [ ! -d "$build" ]; then
    meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 tests/unit/map/bench_map >/dev/null
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive "$build/tests/unit/map/bench_map"
