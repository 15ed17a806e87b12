#!/usr/bin/env bash
# Time pred/ode (CVODES) on ACOP Oral_2CPT: 120 subjects x 66 records, with and without
# 3 sensitivity directions, and with the solver recreated at every dose for comparison.
# Usage: bench/ode.sh [BUILD_DIR] [repeats]   (refdata: $POPK_REFDATA or ../shared/refdata)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=${1:-$top/build}
repeats=${2:-5}
refdata=${POPK_REFDATA:-$top/../shared/refdata}
ninja -C "$builddir" tests/unit/pred/bench_ode >/dev/null
exec "$builddir/tests/unit/pred/bench_ode" "$refdata/acop/Oral_2CPT.csv" "$repeats"
