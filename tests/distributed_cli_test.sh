#!/bin/bash
# Data-parallel runs as a user starts them, on loopback:
# 1. `antidote bench --nproc 2` finishes a small cell; worker 0 alone prints and writes;
#    run again, it reuses the finished cells.
# 2. Two workers started by hand with torchrun's variables; one is killed mid-training:
#    the other stops with an error that says so, well within --dist-timeout.
# 3. `--nproc 2`, one worker killed: the launcher names it, stops the other, exits non-zero.
#
#   tests/distributed_cli_test.sh ANTIDOTE_BINARY
set -euo pipefail
ANTIDOTE=${1:?usage: $0 ANTIDOTE_BINARY}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/antidote_distributed.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
fail() {
  echo "FAIL: $*"
  exit 1
}

cat >small.yaml <<'EOF'
seed: 0
dataset: {name: fmnist, train_limit: 2000, test_limit: 500}
model: {arch: cnn, width: 8, hidden: 32}
train: {epochs: 2}
attacks:
  - {name: badnets, poison_rate: 0.1, target: 0}
defenses: [none, {name: ft, epochs: 2}]
EOF
# A training long enough to be killed in the middle of (about a minute on 2 cores).
sed 's/epochs: 2}/epochs: 200}/' small.yaml >long.yaml

# 1. A bench cell under --nproc 2.
"$ANTIDOTE" bench --nproc 2 -c small.yaml --out bench >bench.out 2>bench.err || {
  cat bench.err
  fail "bench --nproc 2 failed"
}
[ -s bench/results.json ] || fail "no results.json"
[ "$(grep -c 'results' bench.out)" -ge 1 ] || fail "worker 0 printed no results"
if ls bench/*.tmp* bench/cells/*.tmp* >/dev/null 2>&1; then fail "temp files left behind"; fi
grep -q "data-parallel: 2 workers" bench.err || fail "no all-reduce summary"
echo "ok: bench --nproc 2"
# Run again: every worker loads the finished cells and models instead of training.
"$ANTIDOTE" bench --nproc 2 -c small.yaml --out bench >/dev/null 2>again.err || {
  cat again.err
  fail "the second bench --nproc 2 failed"
}
grep -q "finished earlier" again.err || fail "the second run did not reuse the cells"
if grep -q "epoch 1/" again.err; then fail "the second run trained again"; fi
echo "ok: bench --nproc 2 resumes from its cells"

# Waits until file $1 contains $2 (at most 60 s).
wait_for() {
  for _ in $(seq 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "'$2' never appeared in $1"
}

# 2. Workers started by hand; worker 1 killed.
PORT=$((20000 + RANDOM % 20000))
for r in 0 1; do
  env RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
    "$ANTIDOTE" train --dist-timeout 60 -c long.yaml -o model$r.pt >worker$r.out 2>worker$r.err &
  eval "PID$r=$!"
done
wait_for worker0.err "epoch 2/200"
kill -9 "$PID1"
start=$(date +%s)
set +e
wait "$PID0"
rc=$?
set -e
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] || fail "worker 0 exited 0 after worker 1 was killed"
grep -q "worker 0 of 2: .* failed .*another worker has stopped" worker0.err || {
  cat worker0.err
  fail "worker 0's error does not say what happened"
}
[ "$took" -lt 60 ] || fail "worker 0 took ${took}s to notice (timeout 60 s)"
[ ! -e model0.pt ] || fail "a model was written by a failed run"
echo "ok: a killed worker stops the other in ${took}s: $(grep 'error' worker0.err | head -1)"

# 3. --nproc 2 with one worker killed.
"$ANTIDOTE" train --nproc 2 --dist-timeout 60 -c long.yaml -o nproc.pt >launch.out 2>launch.err &
LAUNCHER=$!
wait_for launch.err "epoch 2/200"
CHILD=$(pgrep -P "$LAUNCHER" | tail -1)
[ -n "$CHILD" ] || fail "no workers under the launcher"
kill -9 "$CHILD"
set +e
wait "$LAUNCHER"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "the launcher exited 0 after a worker was killed"
grep -q "worker [01] of 2 stopped (exit code 137); stopping the others" launch.err || {
  cat launch.err
  fail "the launcher did not name the killed worker"
}
[ -z "$(pgrep -P "$LAUNCHER" 2>/dev/null || true)" ] || fail "workers left running"
echo "ok: --nproc 2 with a killed worker exits $rc"
