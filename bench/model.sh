#!/usr/bin/env bash
# bench/model.sh — time model loading on every bundled model; the target is under 5 ms.
# Two figures: popk_model_load in-process (read, YAML, schema, compile, free; what the
# target is about) and a whole 'popk check' process (which adds process start-up, mostly the
# dynamic loader and OpenBLAS/OpenMP initialisation, and printing the summary).
# Usage: bench/model.sh [BUILD_DIR] [RUNS]   (defaults: build, 50)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
runs=${2:-50}
popk=$build/popk
[ -x "$popk" ] || { echo "bench/model.sh: $popk not found (build first)" >&2; exit 2; }
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc bench/model_load.c -o "$build/bench_model_load" \
    -L"$build" -lpopk -Wl,-rpath,"$PWD/$build"
echo "== popk_model_load, mean of $((runs * 4)) loads (ms) =="
"$build/bench_model_load" $((runs * 4)) models/*.yaml models/acop/*.yaml
echo "== popk check process, mean of $runs runs (ms) =="
worst=0
printf '%-34s %10s\n' model 'ms/check'
for f in models/*.yaml models/acop/*.yaml; do
    "$popk" check "$f" >/dev/null
    start=$(date +%s%N)
    for ((i = 0; i < runs; i++)); do
        "$popk" check "$f" >/dev/null
    done
    end=$(date +%s%N)
    us=$(( (end - start) / runs / 1000 ))
    (( us > worst )) && worst=$us
    printf '%-34s %6d.%03d\n' "$f" $((us / 1000)) $((us % 1000))
done
printf 'slowest popk check process: %d.%03d ms\n' $((worst / 1000)) $((worst % 1000))
