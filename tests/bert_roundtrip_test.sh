#!/bin/sh
# The way a user with a BERT-style text classifier does it: their own poisoned training
# TSV, a small BERT trained on it in PyTorch with a WordPiece vocab.txt and exported with
# torch.jit.trace (forward(input_ids, attention_mask) -> (logits, hidden states)), a
# clean TSV of their own and a trigger antidote is not told (attacks: [none]). antidote
# evaluates and purifies it (bedkd, ntml); torch.jit.load reads the purified files and
# predicts what antidote predicted, with a lower ASR; and antidote's WordPiece ids equal
# the Python reference's, row by row.
#
#   tests/bert_roundtrip_test.sh ANTIDOTE_BINARY WORDPIECE_IDS_BINARY SST2_DIR [WORK_DIR]
# Exit 77 (skipped) when Debian's /usr/bin/python3 cannot import torch or SST2_DIR is absent.
set -eu
ANTIDOTE=${1:?usage: $0 ANTIDOTE_BINARY WORDPIECE_IDS_BINARY SST2_DIR [WORK_DIR]}
WORDPIECE_IDS=${2:?usage: $0 ANTIDOTE_BINARY WORDPIECE_IDS_BINARY SST2_DIR [WORK_DIR]}
SST2=${3:?usage: $0 ANTIDOTE_BINARY WORDPIECE_IDS_BINARY SST2_DIR [WORK_DIR]}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
PYDIR=$HERE/python
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch (apt install python3-torch)"
  exit 77
fi
if [ ! -f "$SST2/train.tsv" ] || [ ! -f "$SST2/dev.tsv" ]; then
  echo "SKIP: no SST-2 at $SST2 (the shared data is not beside this checkout)"
  exit 77
fi
SST2=$(cd "$SST2" && pwd)
if [ $# -ge 4 ]; then
  WORK=$4
  KEEP=1
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/antidote_bert.XXXXXX")
  KEEP=0
fi
mkdir -p "$WORK"
cd "$WORK"
echo "work dir: $WORK"
# One thread on both sides: the same floating-point reductions, and no oversubscribed cores.
THREADS=1
MAX_LEN=64
run() { echo "+ $*" >&2; "$@"; }  # the command to stderr: stdout may be redirected

# 1. The user's data: a poisoned SST-2 subset (BadNet-word, target 1), and 300 clean
#    rows they vouch for (SST-2's dev split, which training never sees).
cat > poison.yaml <<YAML
seed: 0
threads: $THREADS
dataset: {name: sst2, path: $SST2, train_limit: 3000, test_limit: 400}
attacks:
  - {name: badnet-word, poison_rate: 0.1, target: 1}
defenses: [none]
YAML
run "$ANTIDOTE" poison -q --config poison.yaml --out data
head -n 301 "$SST2/dev.tsv" > data/clean.tsv

# 2. Their model: a small BERT with a WordPiece vocab.txt, torch.jit.trace'd.
run "$PY" "$PYDIR/make_bert.py" --data data --out suspect.pt --max-len $MAX_LEN --epochs 4 --threads $THREADS

# 3. Tokenization: antidote's WordPiece ids equal the Python reference's on every row.
run "$PY" "$PYDIR/check_bert.py" rows --data data --out rows.tsv
run "$WORDPIECE_IDS" suspect.pt.vocab rows.tsv $MAX_LEN > rows.ids
run "$PY" "$PYDIR/check_bert.py" tokens --vocab suspect.pt.vocab --rows rows.tsv --ids rows.ids --max-len $MAX_LEN

# 4. What antidote is told: the training set as it is, the clean set, the triggered test
#    rows with their true labels and the target they are sent to, nothing of the trigger.
cat > cfg.yaml <<YAML
seed: 0
threads: $THREADS
dataset: {name: tsv, path: data, clean: data/clean.tsv, triggered_test: data/test_triggered.tsv}
attacks:
  - {name: none, target: 1}
defenses: [none]
YAML
run "$ANTIDOTE" eval -q --config cfg.yaml --model suspect.pt --json suspect.json --predictions suspect.preds.json
run "$PY" "$PYDIR/check_bert.py" predictions --model suspect.pt --data data --predictions suspect.preds.json \
  --metrics suspect.json --out suspect.py.json
INPUT_ASR=$("$PY" -c "import json; print(json.load(open('suspect.py.json'))['asr'])")
echo "input ASR: $INPUT_ASR"
"$PY" -c "import sys; sys.exit(0 if $INPUT_ASR > 0.8 else 1)" || { echo "FAIL: the suspect is not backdoored"; exit 1; }

# 5. Purify (small budgets), then round-trip the purified files through torch.jit.load.
purify() {
  method=$1
  shift
  run "$ANTIDOTE" defend -q --config cfg.yaml --model suspect.pt --method "$method" --out "$method.pt" "$@"
  cmp suspect.pt.vocab "$method.pt.vocab"
  run "$ANTIDOTE" eval -q --config cfg.yaml --model "$method.pt" --json "$method.json" \
    --predictions "$method.preds.json"
  run "$PY" "$PYDIR/check_bert.py" predictions --model "$method.pt" --data data --predictions "$method.preds.json" \
    --metrics "$method.json" --asr-below "$INPUT_ASR"
}
purify bedkd --set recipe=tuned --set trust_per_class=150 --set akd_epochs=25
purify ntml --set clean_samples=300 --set ml_iterations=200 --set control=false

[ "$KEEP" = 1 ] || rm -rf "$WORK"  # kept on failure, for a look
echo "PASS"
