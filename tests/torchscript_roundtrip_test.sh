#!/bin/sh
# The way a user does it: a PyTorch model trained on poisoned Fashion-MNIST,
# exported with torch.jit.script, purified by antidote (bedkd, ntml), loaded back with
# torch.jit.load; its predictions equal antidote's and its ASR is under 20 %: the steps
# and numbers of docs/torchscript.md, run word for word. Also: a built-in model's state_dict reads with torch.load under the
# documented names and predicts what antidote predicts.
#
#   tests/torchscript_roundtrip_test.sh ANTIDOTE_BINARY [WORK_DIR]
# Exit 77 (skipped) when Debian's /usr/bin/python3 cannot import torch.
set -eu
ANTIDOTE=${1:?usage: $0 ANTIDOTE_BINARY [WORK_DIR]}
HERE=$(cd "$(dirname "$0")" && pwd)
ANTIDOTE=$(cd "$(dirname "$ANTIDOTE")" && pwd)/$(basename "$ANTIDOTE")
PY=/usr/bin/python3
PYDIR=$HERE/python
if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch and numpy (apt install python3-torch)"
  exit 77
fi
if [ $# -ge 2 ]; then
  WORK=$2
  KEEP=1
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/antidote_roundtrip.XXXXXX")
  KEEP=0
fi
mkdir -p "$WORK"
cd "$WORK"
echo "work dir: $WORK"
# One thread: faster for these tiny models, and immune to oversubscribed CI cores.
THREADS=1

run() { echo "+ $*"; "$@"; }

# 1-4. docs/torchscript.md's "Round trip, step by step", word for word: the poisoned data,
#      the user's PyTorch model, antidote's view of it, bedkd and ntml, and torch.jit.load
#      predicting what antidote predicted (check_roundtrip.py fails past an ASR of 20 %);
#      then the numbers the doc quotes, within 2 points.
mkdir -p bin
ln -sf "$ANTIDOTE" bin/antidote
ln -sfn "$HERE" tests
awk '/<!-- roundtrip: end -->/ { on = 0 } on && !/^```/ { print } /<!-- roundtrip: begin -->/ { on = 1 }' \
  "$HERE/../docs/torchscript.md" > roundtrip.sh
[ -s roundtrip.sh ] || { echo "FAIL: no roundtrip block in docs/torchscript.md"; exit 1; }
PATH=$WORK/bin:$PATH sh -eux roundtrip.sh > roundtrip.out 2>&1 || { cat roundtrip.out; echo "FAIL: the round trip stopped"; exit 1; }
cat roundtrip.out
run "$PY" "$PYDIR/check_quoted_output.py" roundtrip.sh roundtrip.out --tolerance 2

# 5. Fine-pruning cannot mask channels inside an imported graph: a clear error.
if "$ANTIDOTE" defend -q --config cfg.yaml --model suspect.pt --method fp --out fp.pt 2> fp.err; then
  echo "FAIL: fp on a TorchScript model should fail"; exit 1
fi
cat fp.err
grep -q "prunable channels" fp.err

# 6. A model that does not fit the data fails before any training.
run "$PY" - <<PYEOF
import sys; sys.path.insert(0, "$PYDIR")
import torch
from make_model import SmallCnn
torch.jit.script(SmallCnn(num_classes=7)).save("seven.pt")
PYEOF
if "$ANTIDOTE" defend -q --config cfg.yaml --model seven.pt --method bedkd --out x.pt 2> seven.err; then
  echo "FAIL: a 7-class model on 10-class data should fail"; exit 1
fi
cat seven.err
grep -q "predicts 7 classes, the data has 10" seven.err

# 7. Built-in models: the state_dict beside the trained and the purified model reads with
#    torch.load under the documented names and predicts what antidote predicts.
cat > builtin.yaml <<YAML
seed: 0
threads: $THREADS
dataset: {name: fmnist, train_limit: 3000, test_limit: 500}
model: {arch: cnn, width: 8, hidden: 32}
train: {epochs: 2, batch_size: 32}
attacks:
  - {name: badnets, poison_rate: 0.1, target: 0}
YAML
run "$ANTIDOTE" train -q --config builtin.yaml --out builtin.pt
run "$ANTIDOTE" defend -q --config builtin.yaml --model builtin.pt --method ntml --out builtin_ntml.pt \
  --set clean_samples=200 --set nt_epochs=1 --set ml_iterations=100 --set consensus_iterations=100 --set control=false
for m in builtin builtin_ntml; do
  run "$ANTIDOTE" eval -q --config builtin.yaml --model $m.pt --predictions $m.preds.json
  run "$PY" "$PYDIR/check_state_dict.py" --state-dict $m.pt.state_dict.pt --width 8 --hidden 32 --data data \
    --predictions $m.preds.json
done

[ "$KEEP" = 1 ] || rm -rf "$WORK"  # kept on failure, for a look
echo "PASS"
