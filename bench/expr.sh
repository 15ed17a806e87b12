#!/bin/sh
# bench/expr.sh — build and run the expression evaluator benchmark (ns per block evaluation).
set -e
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
ninja -C build -j2 tests/unit/expr/bench_expr >/dev/null
exec build/tests/unit/expr/bench_expr "$@"
