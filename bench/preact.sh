#!/usr/bin/env bash
# PreAct-ResNet-18's defense stages in float32 and bfloat16, each next to its PyTorch
# twin at the same precision and as a share of the peak at that precision: antidote_bench
# --cells preact --precision fp32|bf16, bench/python/twin.py on the same cell and suspect,
# precision_twin.py --peaks-only for the peaks. Replaces the "preact" block of
# bench/RESULTS.md.
#
#   bench/preact.sh [THREADS] [--quick]      (default: all cores)
# ANTIDOTE_BENCH_BIN=path: use an already built antidote_bench instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=$(nproc)
QUICK=()
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=(--quick) ;;
    *) THREADS=$arg ;;
  esac
done
PY=/usr/bin/python3
BUILD=build-bench
if [ -n "${ANTIDOTE_BENCH_BIN:-}" ]; then
  BIN=$ANTIDOTE_BENCH_BIN
else
  cmake -B "$BUILD" -S . -DCMAKE_BUILD_TYPE=Release -DANTIDOTE_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j2 --target antidote_bench
  BIN=$BUILD/bench/antidote_bench
fi
OUT=$BUILD/preact-out
mkdir -p "$OUT"
for p in fp32 bf16; do
  echo "== $p: antidote, then PyTorch (threads $THREADS; load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BIN" --sections defenses --cells preact --precision $p --threads "$THREADS" --out "$OUT/$p" "${QUICK[@]}"
  $PY bench/python/twin.py --in "$OUT/$p" --threads "$THREADS" --blas-threads 1 --sections defenses
done
$PY bench/python/precision_twin.py --threads "$THREADS" --peaks-only >"$OUT/peaks.json"
$PY bench/python/preact_report.py --dir "$OUT" --out bench/RESULTS.md \
  --command "bench/preact.sh $THREADS ${QUICK[*]}"
