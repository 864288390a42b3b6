#!/usr/bin/env bash
# Build antidote_bench, run it and its PyTorch-Python twins (same work, same
# threads, one after the other), then the BLAS before/after (reference BLAS for this
# process only, through LD_LIBRARY_PATH) and the torch × OpenBLAS threads check, and
# write bench/RESULTS.md.
#
#   bench/run.sh [--quick] [--threads N] [--jobs J]
#
# --quick: tiny step counts and epochs (smoke test). Default threads: all cores.
# ANTIDOTE_BENCH_BIN=path: use an already built antidote_bench instead of building one.
# Needs Debian's python3-torch (/usr/bin/python3); leaves OPENBLAS_CORETYPE as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=$(nproc)
QUICK=()
JOBS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --threads) THREADS="$2"; shift ;;
    --jobs) JOBS="$2"; shift ;;
    *) echo "usage: bench/run.sh [--quick] [--threads N] [--jobs J]" >&2; exit 2 ;;
  esac
  shift
done
COMMAND="bench/run.sh ${QUICK[*]} --threads $THREADS"
BUILD=build-bench
OUT=$BUILD/bench-out
PY=/usr/bin/python3
if ! $PY -c 'import torch' 2>/dev/null; then
  echo "bench/run.sh: $PY has no torch (apt-get install python3-torch)" >&2
  exit 2
fi

if [ -n "${ANTIDOTE_BENCH_BIN:-}" ]; then
  BIN=$ANTIDOTE_BENCH_BIN  # a driver built elsewhere (skips the build)
else
  cmake -B "$BUILD" -S . -DCMAKE_BUILD_TYPE=Release -DANTIDOTE_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j"$JOBS" --target antidote_bench
  BIN=$BUILD/bench/antidote_bench
fi
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== main run: antidote, then PyTorch (threads $THREADS; load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$BIN" --threads "$THREADS" --out "$OUT" "${QUICK[@]}"
# The twin gets the same sensible BLAS setting as antidote: one OpenBLAS thread under
# the torch threads (the oversubscription table below shows why).
$PY bench/python/twin.py --in "$OUT" --threads "$THREADS" --blas-threads 1

if [ ${#QUICK[@]} -gt 0 ]; then STEPS=(--cnn-steps 3 --transformer-steps 3); else STEPS=(--cnn-steps 20 --transformer-steps 30); fi

REF=/usr/lib/x86_64-linux-gnu/blas
if [ -e "$REF/libblas.so.3" ]; then
  echo "== reference BLAS (LD_LIBRARY_PATH=$REF, this process only)"
  LD_LIBRARY_PATH=$REF "$BIN" --threads "$THREADS" --out "$OUT/refblas" --sections matmul,train "${STEPS[@]}" "${QUICK[@]}"
  LD_LIBRARY_PATH=$REF $PY bench/python/twin.py --in "$OUT/refblas" --threads "$THREADS" --sections matmul,train
fi

echo "== torch threads x OpenBLAS threads"
for t in 1 "$THREADS"; do
  for b in 1 "$THREADS"; do
    d="$OUT/oversub-$t-$b"
    [ -e "$d/python.json" ] && continue
    "$BIN" --threads "$t" --blas-threads "$b" --out "$d" --sections train "${STEPS[@]}" "${QUICK[@]}"
    $PY bench/python/twin.py --in "$d" --threads "$t" --blas-threads "$b" --sections train
  done
done

$PY bench/python/report.py --dir "$OUT" --out bench/RESULTS.md --command "$COMMAND"
