#!/usr/bin/env bash
# bench/estimate.sh — time 'popk fit' (FOCE-I) on the issue-5 benchmark set in one run, with
# the targets and the published NONMEM 7.4.3 / nlmixr2 times side by side; R's nlme on the
# same one-compartment theophylline model with popk's time as a ratio of nlme's; and how the
# run time grows with the number of subjects (ACOP Oral_1CPT single dose resampled to 60, 120,
# 240 and 480 subjects).
#
# Times: "fit s" is popk's own figure (estimation + covariance step, fit.yaml runtime_s), "cov s"
# the covariance step's share; "preds/n" the estimation's subject predictions per subject (the
# work measure: passes differ in cost);
# "wall s" and "cpu s" are the whole process (start-up, reading, writing the outputs). On a
# shared machine wall time includes waiting for a core, so the CPU time is printed too.
# Usage: bench/estimate.sh [BUILD_DIR]   Environment: THREADS (default 2), REPS (theo_sd
# repetitions, default 5), ODE_LIMIT (seconds allowed for the Oral_1CPTMM fit, default 900),
# SKIP_ODE=1 (leave it out), SKIP_NLME=1, SKIP_SCALING=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
threads=${THREADS:-2}
reps=${REPS:-5}
popk=$build/popk
[ -x "$popk" ] || { echo "bench/estimate.sh: $popk not found (build first)" >&2; exit 2; }
export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
acop=tests/reference/data/acop

# fit NAME MODEL DATA [popk options...]: one fit; sets fit_s wall_s cpu_s ofv status nsub nobs
# evals (objective passes, gradients included) iters (outer iterations)
# (LIMIT, if set, stops the fit after that many seconds: status "TIMEOUT")
fit() {
    local name=$1 out=$tmp/$1
    shift
    local t0 t1 rc=0
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$tmp/time" timeout "${LIMIT:-0}" \
        "$popk" fit "$@" --threads "$threads" --quiet --out "$out" >/dev/null 2>"$tmp/err" || rc=$?
    t1=$(date +%s%N)
    if [ "$rc" -eq 124 ]; then
        wall_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        cpu_s=$(awk '{ printf "%.3f", $1 + $2 }' "$tmp/time" 2>/dev/null || echo nan)
        fit_s=$wall_s ofv=nan status="TIMEOUT(>${LIMIT}s)" nsub=- nobs=- evals=- iters=- preds=- cov_s=nan
        return
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
        echo "bench/estimate.sh: popk fit $name failed (exit $rc):" >&2
        cat "$tmp/err" >&2
        exit 1
    fi
    wall_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    cpu_s=$(awk '{ printf "%.3f", $1 + $2 }' "$tmp/time")
    read -r fit_s ofv status nsub nobs evals iters preds cov_s < <(awk '
        /^  runtime_s:/ { r = $2 } /^  ofv:/ { o = $2 } /^  status:/ { s = ($2 == "converged") ? "ok" : "NOCONV" }
        /^  subjects:/ { n = $2 } /^  observations:/ { m = $2 } /^  evaluations:/ { e = $2 }
        /^  iterations:/ { it = $2 } /^  predictions:/ { p = $2 } /^    runtime_s:/ { c = $2 }
        END { print r, o, s, n, m, e, it, p, (c == "" ? 0 : c) }' "$out/fit.yaml")
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== popk fit, FOCE-I, $threads threads ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)) =="
printf '%-22s %4s %5s %8s %7s %8s %8s %8s %9s %8s %12s %6s %5s %7s %s\n' case subj obs 'fit s' \
    'cov s' 'wall s' 'cpu s' target 'NONMEM s' 'nlmixr2' OFV evals iters 'preds/n' status
row() { # name target nonmem nlmixr2
    printf '%-22s %4s %5s %8.3f %7.3f %8.3f %8.3f %8s %9s %8s %12.4f %6s %5s %7s %s\n' "$1" "$nsub" \
        "$nobs" "$fit_s" "$cov_s" "$wall_s" "$cpu_s" "$2" "$3" "$4" "$ofv" "$evals" "$iters" \
        "$(awk -v p="$preds" -v n="$nsub" 'BEGIN { if (p == "-" || n == "-") print "-"; else printf "%.0f", p / n }')" \
        "$status"
}

# theo_sd: the median of REPS runs (it is short enough to be noisy)
: > "$tmp/theo_fit"; : > "$tmp/theo_wall"; : > "$tmp/theo_cpu"
for ((i = 0; i < reps; i++)); do
    fit theo_sd models/theophylline.yaml datasets/theo_sd.csv
    echo "$fit_s" >> "$tmp/theo_fit"; echo "$wall_s" >> "$tmp/theo_wall"; echo "$cpu_s" >> "$tmp/theo_cpu"
done
fit_s=$(median < "$tmp/theo_fit"); wall_s=$(median < "$tmp/theo_wall"); cpu_s=$(median < "$tmp/theo_cpu")
theo_fit=$fit_s theo_wall=$wall_s theo_cpu=$cpu_s
row "theo_sd (median of $reps)" 0.2 - 0.35

fit Bolus_1CPT models/acop/Bolus_1CPT.yaml $acop/Bolus_1CPT.csv --ignore SD=0
row "Bolus_1CPT SD" 0.5 4.7 4.3
fit Oral_1CPT models/acop/Oral_1CPT.yaml $acop/Oral_1CPT.csv --ignore SD=0
row "Oral_1CPT SD" 1.5 15.2 20.6
fit Oral_2CPT models/acop/Oral_2CPT.yaml $acop/Oral_2CPT.csv --ignore SD=0
row "Oral_2CPT SD" 4 27.3 -
if [ "${SKIP_ODE:-0}" != 1 ]; then
    LIMIT=${ODE_LIMIT:-900} fit Oral_1CPTMM models/acop/Oral_1CPTMM.yaml $acop/Oral_1CPTMM.csv --ignore SD=0
    row "Oral_1CPTMM SD (ODE)" 30 790 -
fi

if [ "${SKIP_NLME:-0}" != 1 ]; then
    echo
    echo "== R nlme: the same one-compartment model on theo_sd (SSfol, pdDiag on lKe, lKa, lCl) =="
    if ! Rscript -e 'library(nlme)' >/dev/null 2>&1; then
        echo "installing r-base-core r-cran-nlme (Debian) ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            r-base-core r-cran-nlme >/dev/null
    fi
    cat > "$tmp/nlme.R" <<'EOF'
suppressMessages(library(nlme))
args <- commandArgs(TRUE)
d <- read.csv(args[1])
reps <- as.integer(args[2])
dose <- d[d$EVID == 1, c("ID", "AMT")]
obs <- d[d$EVID == 0, c("ID", "TIME", "DV")]
obs$Dose <- dose$AMT[match(obs$ID, dose$ID)]
g <- groupedData(DV ~ TIME | ID, data = obs)
# first-order absorption, one compartment (SSfol: lKe, lKa, lCl), diagonal random effects
fitit <- function() nlme(DV ~ SSfol(Dose, TIME, lKe, lKa, lCl), data = g,
                         fixed = lKe + lKa + lCl ~ 1, random = pdDiag(lKe + lKa + lCl ~ 1),
                         start = c(lKe = -2.45, lKa = 0.45, lCl = 1.0))
f <- fitit()
t <- sapply(seq_len(reps), function(i) { s <- system.time(fitit()); c(s[["elapsed"]], s[["user.self"]] + s[["sys.self"]]) })
fe <- fixef(f)
cat(sprintf("%.4f %.4f %.4f %.4f %.4f %.4f\n", median(t[1, ]), median(t[2, ]),
            -2 * as.numeric(logLik(f)), fe[["lKe"]], fe[["lKa"]], fe[["lCl"]]))
EOF
    read -r nlme_wall nlme_cpu nlme_m2ll lke lka lcl < <(Rscript "$tmp/nlme.R" datasets/theo_sd.csv "$reps")
    theo_m2ll=$(awk '/^  ofv:/ { o = $2 } /^  observations:/ { n = $2 } END { printf "%.4f", o + n * log(2 * 3.141592653589793) }' "$tmp/theo_sd/fit.yaml")
    printf '%-28s %10s %10s %12s\n' '' 'wall s' 'cpu s' '-2LL'
    printf '%-28s %10.4f %10.4f %12.4f   (lKe %.4f, lKa %.4f, lCl %.4f)\n' "nlme (median of $reps)" \
        "$nlme_wall" "$nlme_cpu" "$nlme_m2ll" "$lke" "$lka" "$lcl"
    printf '%-28s %10.4f %10.4f %12.4f   (fit s %.4f; FOCE-I, random effects on KA, CL, V)\n' \
        "popk (median of $reps)" "$theo_wall" "$theo_cpu" "$theo_m2ll" "$theo_fit"
    awk -v a="$theo_fit" -v w="$theo_wall" -v c="$theo_cpu" -v nw="$nlme_wall" -v nc="$nlme_cpu" 'BEGIN {
        printf "popk / nlme: %.3f (popk fit s / nlme fit wall s), %.3f (process wall), %.3f (cpu)\n", a / nw, w / nw, c / nc }'
fi

if [ "${SKIP_SCALING:-0}" != 1 ]; then
    echo
    echo "== run time against subjects: ACOP Oral_1CPT single dose, subjects resampled with replacement =="
    printf '%8s %6s %8s %8s %8s %12s %6s %11s %s\n' subjects obs 'fit s' 'wall s' 'cpu s' OFV evals 'cpu ms/subj' status
    for n in 60 120 240 480; do
        # resample whole subjects (fixed seed), renumber IDs 1..n, keep the SD == 1 part
        awk -F, -v n="$n" -v seed=$((20261125 + n)) '
            NR == 1 { print; for (k = 1; k <= NF; k++) { if ($k == "ID") ic = k; if ($k == "SD") sc = k }; next }
            $sc != 1 { next }
            { if (!($ic in rows)) ids[++nid] = $ic; rows[$ic] = rows[$ic] $0 "\n" }
            END {
                srand(seed)
                for (s = 1; s <= n; s++) {
                    id = ids[int(rand() * nid) + 1]
                    m = split(rows[id], lines, "\n")
                    for (j = 1; j < m; j++) { split(lines[j], f, ","); f[ic] = s
                        line = f[1]; for (k = 2; k <= length(f); k++) line = line "," f[k]; print line }
                }
            }' $acop/Oral_1CPT.csv > "$tmp/oral_$n.csv"
        fit "oral_$n" models/acop/Oral_1CPT.yaml "$tmp/oral_$n.csv"
        printf '%8s %6s %8.3f %8.3f %8.3f %12.4f %6s %11.2f %s\n' "$nsub" "$nobs" "$fit_s" "$wall_s" \
            "$cpu_s" "$ofv" "$evals" "$(awk -v a="$cpu_s" -v n="$nsub" 'BEGIN { print 1000 * a / n }')" "$status"
    done
fi
