#!/bin/sh
# bench/pred.sh — prediction engine speed: all 120 subjects of ACOP Oral_2CPT (7,920 records)
# on the analytic path (target < 2 ms), with eta derivatives (< 5 ms) and on the ODE path
# (< 100 ms): solver method auto (matrix exponential, this system being linear) and bdf
# (CVODES forced), side by side; then cost against records per subject and compartments.
# Usage: bench/pred.sh [BUILD_DIR [--quick]]   (default build-bench, buildtype=release;
# --quick: the analytic rows only)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-bench"}
if [ ! -d "$build" ]; then
    meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 tests/unit/pred/bench_pred >/dev/null
OMP_WAIT_POLICY=passive "$build/tests/unit/pred/bench_pred" "$root" ${2:-}
