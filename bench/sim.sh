#!/bin/sh
# bench/sim.sh — wall time and peak memory of 'popk sim' at scale (issue 6):
#   1. 10^6 subjects x 14 days q12h x hourly output, 1-cmt analytic IV bolus (ACOP Bolus_1CPT),
#      percentiles (sketch) and a PTA target;
#   2. 10^5 subjects, 2-cmt ODE model (ACOP Bolus_2CPT_ode), same regimen and grid.
# Usage: bench/sim.sh [BUILD_DIR] [N1] [N2]   (defaults: build-bench, 1000000, 100000)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-bench"}
n1=${2:-1000000}
n2=${3:-100000}
if [ ! -d "$build" ]; then
    meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 popk >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMP_WAIT_POLICY=passive
# Timings on a shared machine mean little without its load: print it around each run.
load() { cut -d' ' -f1-3 /proc/loadavg; }
run() {
    label=$1
    shift
    echo "$label: load average before $(load)"
    /usr/bin/time -f "$label: %e s wall, %U s user, %M KB peak RSS" "$build/popk" sim "$@" \
        --regimen "100 mg iv q12h x 28" --times 0:1:336 --target "trough>=0.5" --quiet \
        --out "$out/$label" >/dev/null
    echo "$label: load average after $(load)"
}
run "1cmt-analytic-n$n1" "$root/models/acop/Bolus_1CPT.yaml" --n "$n1"
run "2cmt-ode-n$n2" "$root/models/acop/Bolus_2CPT_ode.yaml" --n "$n2"
