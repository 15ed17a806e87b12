#!/bin/sh
# bench/data.sh — dataset reader speed: a 7,920-row ACOP file (target < 20 ms) and a generated
# 10^6-row file (target < 1.5 s, peak RSS < 300 MB). Usage: bench/data.sh [BUILD_DIR]
# Times 'popk data' end to end (process start, read, summary) and popk_data_read in process.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
popk="$build/popk"
[ -x "$popk" ] || { echo "no $popk: build first (meson setup build && ninja -C build)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/popk-bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

small="$root/../shared/refdata/acop/Oral_2CPT.csv"
[ -f "$small" ] || small="$root/datasets/warfarin.csv"

# 1000 subjects x 1000 records: a dose then 999 observations, a numeric and a text covariate.
big="$tmp/big.csv"
awk 'BEGIN {
    srand(1); print "ID,TIME,DV,AMT,EVID,MDV,CMT,WT,SEX";
    for (id = 1; id <= 1000; id++) {
        wt = 50 + (id * 37) % 50 + 0.1 * (id % 10); sex = id % 2 ? "male" : "female";
        printf "%d,0,0,100,1,1,1,%.1f,%s\n", id, wt, sex;
        for (j = 1; j < 1000; j++)
            printf "%d,%.2f,%.4f,0,0,0,2,%.1f,%s\n", id, j * 0.25, 10 * exp(-0.01 * j) * (0.9 + 0.2 * rand()), wt, sex;
    }
}' > "$big"
echo "generated $big: $(wc -l < "$big") lines, $(( $(wc -c < "$big") / 1048576 )) MiB"

# Wall time of N runs of 'popk data FILE' in ms: prints best and median.
time_cli() {
    n=$1; f=$2; i=0; : > "$tmp/times"
    while [ $i -lt "$n" ]; do
        t0=$(date +%s%N); "$popk" data "$f" > /dev/null; t1=$(date +%s%N)
        echo $(( (t1 - t0) / 1000 )) >> "$tmp/times"; i=$((i + 1))
    done
    sort -n "$tmp/times" | awk -v f="$f" '{ t[NR] = $1 } END {
        printf "popk data %s: best %.1f ms, median %.1f ms (%d runs)\n", f, t[1] / 1000, t[int((NR + 1) / 2)] / 1000, NR }'
}

peak_rss() {
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v "$popk" data "$1" 2>&1 >/dev/null | awk -v f="$1" \
            '/Maximum resident set size/ { printf "popk data %s: peak RSS %.1f MB\n", f, $NF / 1024 }'
    else
        echo "(/usr/bin/time not found: peak RSS not measured)"
    fi
}

time_cli 20 "$small"
peak_rss "$small"
time_cli 3 "$big"
peak_rss "$big"

if cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I"$root/include" -I"$root/src" \
      "$root/bench/bench_data.c" -L"$build" -lpopk -Wl,-rpath,"$build" -o "$tmp/bench_data" 2>"$tmp/cc.log"; then
    "$tmp/bench_data" "$small" 50
    "$tmp/bench_data" "$big" 3
else
    echo "(could not build bench_data against $build/libpopk.so; see below)"; cat "$tmp/cc.log"
fi
