#!/usr/bin/env bash
# Data-parallel training on this host over loopback (c10d/Gloo): samples/s of
# `antidote train` with 1 process × 1 thread, 1 process × 2 threads and 2 processes × 1
# thread, for the small CNN (Fashion-MNIST) and the Transformer (SST-2); the share of a
# step the gradient all-reduce takes; and the bytes each built-in model all-reduces per
# step. Replaces the "Data-parallel training" section of bench/RESULTS.md.
#
#   bench/distributed.sh [ANTIDOTE_BINARY]     (default: build/antidote)
set -euo pipefail
cd "$(dirname "$0")/.."
ANTIDOTE=$(realpath "${1:-build/antidote}")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/antidote_ddp_bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SST2=$(realpath ../shared/data/text/sst2)

config() {  # config MODEL
  case "$1" in
    cnn) echo "{seed: 0, dataset: {name: fmnist, train_limit: 20000, test_limit: 1000}, model: {arch: cnn},
               train: {epochs: 3, batch_size: 128}, attacks: [{name: none}], defenses: [none]}" ;;
    transformer) echo "{seed: 0, dataset: {name: sst2, path: $SST2, train_limit: 16000, test_limit: 500},
               model: {arch: transformer}, train: {epochs: 3, batch_size: 32, optimizer: adam, lr: 0.001},
               attacks: [{name: none}], defenses: [none]}" ;;
  esac
}

# The last epoch's samples/s (all workers together) from train's progress lines.
rate_of() { grep -o '[0-9]* samples/s' "$1" | tail -1 | cut -d' ' -f1; }

table=$WORK/table.md
{
  echo "| model | batch | 1 process × 1 thread | 1 process × 2 threads | 2 processes × 1 thread | all-reduce share (2 × 1) | all-reduced per step |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} >"$table"
for model in cnn transformer; do
  config $model >"$WORK/$model.yaml"
  "$ANTIDOTE" train -c "$WORK/$model.yaml" --threads 1 -o "$WORK/m.pt" 2>"$WORK/$model-1x1.err" >/dev/null
  "$ANTIDOTE" train -c "$WORK/$model.yaml" --threads 2 -o "$WORK/m.pt" 2>"$WORK/$model-1x2.err" >/dev/null
  "$ANTIDOTE" train --nproc 2 -c "$WORK/$model.yaml" -o "$WORK/m.pt" 2>"$WORK/$model-2x1.err" >/dev/null
  # "data-parallel: 2 workers; S gradient all-reduces, M MB from each worker, T s in them"
  summary=$(grep 'data-parallel:' "$WORK/$model-2x1.err")
  steps=$(echo "$summary" | sed -E 's/.*; ([0-9]+) gradient.*/\1/')
  mb=$(echo "$summary" | sed -E 's/.*, ([0-9.]+) MB from.*/\1/')
  secs=$(echo "$summary" | sed -E 's/.*, ([0-9.]+) s in them.*/\1/')
  # The training's own seconds: rows / (rows per second) of each epoch line ("R/R | S samples/s").
  train_s=$(grep -oE '[0-9]+/[0-9]+ \| [0-9]+ samples/s' "$WORK/$model-2x1.err" |
    awk -F'[/ ]' '{ s += $1 / $4 } END { printf "%.1f", s }')
  batch=$(grep -o 'batch_size: [0-9]*' "$WORK/$model.yaml" | cut -d' ' -f2)
  share=$(awk -v a="$secs" -v b="$train_s" 'BEGIN { printf "%.1f", 100 * a / b }')
  per_step=$(awk -v a="$mb" -v b="$steps" 'BEGIN { printf "%.2f", a / b }')
  echo "| $model | $batch | $(rate_of "$WORK/$model-1x1.err") | $(rate_of "$WORK/$model-1x2.err") | $(rate_of "$WORK/$model-2x1.err") | ${share} % ($secs of ${train_s} s) | $per_step MB |" >>"$table"
done

section=$WORK/section.md
{
  echo "<!-- distributed: begin -->"
  echo "## Data-parallel training (c10d/Gloo over loopback)"
  echo
  echo "Generated $(date -u '+%Y-%m-%d %H:%M') by \`bench/distributed.sh\`: \`antidote train\`, samples/s of the last of 3 epochs (all workers together; the global batch is the same in every column). Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  cat "$table"
  echo
  echo "The all-reduce share is the seconds worker 0 spent in the gradient all-reduces over the seconds of its training epochs. Per step each worker sends and receives about 2(N−1)/N times the bytes in the last column (a ring all-reduce), so across hosts a step's all-reduce takes about that over the link's rate: docs/distributed.md."
  echo "<!-- distributed: end -->"
} >"$section"
/usr/bin/python3 bench/python/section.py distributed "$section"
cat "$section"
