#!/bin/sh
# The README's walkthrough "Your own model and data, trigger unknown", run word for word:
# the shell block between its `walkthrough: begin` and `walkthrough: end` markers runs in
# a scratch directory laid out like the repository's root (build/antidote, examples/),
# every command must succeed (defend --strict exits 4 when purification failed), and
# every output line the README quotes (`#   ...`) must appear, its words equal and each
# number within 2 points (other CPUs round differently).
#
#   tests/readme_walkthrough_test.sh ANTIDOTE_BINARY [WORK_DIR]
# Exit 77 (skipped) when Debian's /usr/bin/python3 has no torch or Fashion-MNIST is absent.
set -eu
ANTIDOTE=${1:?usage: $0 ANTIDOTE_BINARY [WORK_DIR]}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANTIDOTE=$(cd "$(dirname "$ANTIDOTE")" && pwd)/$(basename "$ANTIDOTE")
PY=/usr/bin/python3
if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1 || [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "SKIP: needs Debian's python3-torch and dataset-fashion-mnist"
  exit 77
fi
WORK=${2:-$(mktemp -d "${TMPDIR:-/tmp}/antidote_walkthrough.XXXXXX")}
mkdir -p "$WORK/build"
cd "$WORK"
ln -sf "$ANTIDOTE" build/antidote
ln -sfn "$ROOT/examples" examples
awk '/<!-- walkthrough: end -->/ { on = 0 } on && !/^```/ { print } /<!-- walkthrough: begin -->/ { on = 1 }' \
  "$ROOT/README.md" > walkthrough.sh
[ -s walkthrough.sh ] || { echo "FAIL: no walkthrough block in README.md"; exit 1; }
echo "work dir: $WORK"
cat walkthrough.sh
sh -eux walkthrough.sh > output.txt 2>&1 || { cat output.txt; echo "FAIL: the walkthrough stopped"; exit 1; }
cat output.txt
"$PY" "$ROOT/tests/python/check_quoted_output.py" walkthrough.sh output.txt --tolerance 2
[ $# -ge 2 ] || rm -rf "$WORK"
echo "PASS"
