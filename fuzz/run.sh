#!/usr/bin/env bash
# Runs one fuzz target for a while over its seed corpus and fails on any finding (a
# crash, a sanitizer report, an input slower than 10 s or one needing over 2 GB).
# Usage: fuzz/run.sh TARGET SEED_CORPUS SECONDS [WORK_DIR]
# New inputs go to WORK_DIR/corpus, findings to WORK_DIR/findings; the seed corpus in
# the repository is only read.
set -euo pipefail
target=$1 seeds=$2 seconds=$3 work=${4:-$(mktemp -d)}
mkdir -p "$work/corpus" "$work/findings"
"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/findings/" "$work/corpus" "$seeds" > "$work/log.txt" 2>&1 || {
  tail -n 60 "$work/log.txt"
  echo "fuzz target $(basename "$target") found a problem; the input is in $work/findings" >&2
  exit 1
}
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/log.txt"
