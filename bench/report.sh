#!/bin/sh
# bench/report.sh — time the diagnostics against the issue's targets: a 500-replicate VPC of
# the ACOP Oral_1CPT single-dose design (120 subjects; target < 10 s) and the report of a
# theo_sd fit (target < 2 s, VPC and NPDE from 500 replicates included).
# Usage: bench/report.sh [BUILD_DIR]   (default: build-bench, configured with buildtype=release)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-bench"}
if [ ! -d "$build" ]; then
    meson setup "$build" "$root" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 popk >/dev/null
popk="$build/popk"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=passive

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# The Oral_1CPT model at NONMEM 7.4.3's estimates (refdata README, run N023).
sed -e 's/tcl: {init: 1.6/tcl: {init: 1.39014/' -e 's/tv: {init: 4.5/tv: {init: 4.19282/' \
    -e 's/tka: {init: 0.2/tka: {init: -0.026632/' -e 's/eta_cl: 0.15/eta_cl: 0.0642546/' \
    -e 's/eta_v: 0.15/eta_v: 0.0751482/' -e 's/eta_ka: 0.15/eta_ka: 0.10379/' \
    -e 's/rsv: {init: 0.3/rsv: {init: 0.198611/' \
    "$root/models/acop/Oral_1CPT.yaml" > "$work/oral_1cpt_fit.yaml"
t0=$(now)
"$popk" vpc "$work/oral_1cpt_fit.yaml" "$root/tests/reference/data/acop/Oral_1CPT.csv" \
    --accept SD=1 --nsim 500 --out "$work/vpc" >/dev/null
t1=$(now)
echo "vpc Oral_1CPT (120 subjects, 500 replicates): $(elapsed "$t0" "$t1") s (target < 10 s)"

(cd "$root" && "$popk" fit models/theophylline.yaml datasets/theo_sd.csv --quiet \
    --out "$work/theo" >/dev/null)
t0=$(now)
(cd "$root" && "$popk" report "$work/theo" >/dev/null)
t1=$(now)
echo "report theo_sd (VPC + NPDE, 500 replicates): $(elapsed "$t0" "$t1") s (target < 2 s)"
