#!/usr/bin/env bash
# Training in float32 and in bfloat16 (autocast): samples/s of `antidote train` with
# --precision fp32 and bf16 for the small CNN and PreAct-ResNet-18 (width 64) on
# Fashion-MNIST, next to the PyTorch twin at the same precision
# (bench/python/precision_twin.py: torch.cpu.amp.autocast), and each as a share of the
# matmul peak at that precision. Replaces the "Training precision" section of
# bench/RESULTS.md.
#
#   bench/precision.sh [ANTIDOTE_BINARY] [THREADS]     (default: build/antidote, all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
ANTIDOTE=$(realpath "${1:-build/antidote}")
THREADS=${2:-$(nproc)}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/antidote_precision.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# The last epoch's samples/s from train's progress lines.
rate_of() { grep -o '[0-9.]* samples/s' "$1" | tail -1 | cut -d' ' -f1; }

cat >"$WORK/cnn.yaml" <<YAML
{seed: 0, dataset: {name: fmnist, train_limit: 20000, test_limit: 500}, model: {arch: cnn},
 train: {epochs: 2, batch_size: 128}, attacks: [{name: none}], defenses: [none]}
YAML
cat >"$WORK/resnet.yaml" <<YAML
{seed: 0, dataset: {name: fmnist, train_limit: 1280, test_limit: 200}, model: {arch: preact_resnet18, width: 64},
 train: {epochs: 1, batch_size: 128}, attacks: [{name: none}], defenses: [none]}
YAML
declare -A rate
for model in cnn resnet; do
  for p in fp32 bf16; do
    "$ANTIDOTE" train -c "$WORK/$model.yaml" --threads "$THREADS" --precision $p -o "$WORK/m.pt" \
      >/dev/null 2>"$WORK/$model-$p.err"
    rate[$model-$p]=$(rate_of "$WORK/$model-$p.err")
  done
done
twin=$(/usr/bin/python3 bench/python/precision_twin.py --threads "$THREADS")
field() { echo "$twin" | /usr/bin/python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)['$1'])"; }
# The peak at a precision: the faster of a 2048² matmul and a 3×3 convolution (oneDNN's
# float32 convolutions outrun the float32 matmul, which Debian's LibTorch hands to OpenBLAS).
peak() { awk -v a="$(field "matmul_$1")" -v b="$(field "conv_$1")" 'BEGIN { printf "%.1f", (a + 0 > b + 0) ? a : b }'; }
peak32=$(peak fp32)
peak16=$(peak bf16)
# Training FLOPs per sample (3 × forward): the CNN's as in the training table above,
# PreAct-ResNet-18's from its 0.45 G multiply-adds per 28×28 forward pass.
pct() { awk -v r="$1" -v f="$2" -v p="$3" 'BEGIN { printf "%.0f%%", 100 * r * f / 1e9 / p }'; }
row() {  # row NAME KEY TWIN_KEY MFLOP
  local a32=${rate[$2-fp32]} a16=${rate[$2-bf16]} t32 t16
  t32=$(field "${3}_fp32")
  t16=$(field "${3}_bf16")
  echo "| $1 | ${4} | $a32 ($(pct "$a32" "$4e6" "$peak32")) | $a16 ($(pct "$a16" "$4e6" "$peak16")) | **$(awk -v a="$a16" -v b="$a32" 'BEGIN { printf "%.2f", a / b }')×** | $t32 | $t16 | $(awk -v a="$t16" -v b="$t32" 'BEGIN { printf "%.2f", a / b }')× |"
}
section=$WORK/section.md
{
  echo "<!-- precision: begin -->"
  echo "## Training precision: float32 and bfloat16"
  echo
  echo "Generated $(date -u '+%Y-%m-%d %H:%M') by \`bench/precision.sh\` ($THREADS threads; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(grep -o -m1 -E 'avx512_bf16|amx_bf16' /proc/cpuinfo || echo 'no bf16 flag')). \`antidote train --precision fp32|bf16\` on Fashion-MNIST, batch 128, samples/s of the last epoch (% of the peak at that precision); the PyTorch twin (\`bench/python/precision_twin.py\`) runs the same architecture's training step under \`torch.cpu.amp.autocast(dtype=torch.bfloat16)\`. Peak (PyTorch on the same LibTorch, the faster of a 2048² matmul and a 128-channel 3×3 convolution at 14×14, batch 128): float32 $peak32 GFLOP/s (matmul $(field matmul_fp32), convolution $(field conv_fp32)), bfloat16 $peak16 GFLOP/s (matmul $(field matmul_bf16), convolution $(field conv_bf16))."
  echo
  echo "| model | MFLOP/sample (training) | antidote fp32 | antidote bf16 | bf16 speed-up | PyTorch fp32 | PyTorch bf16 | PyTorch speed-up |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row "cnn" cnn cnn 25.0
  row "preact_resnet18 (width 64)" resnet preact_resnet18 2700
  echo "<!-- precision: end -->"
} >"$section"
/usr/bin/python3 bench/python/section.py precision "$section"
cat "$section"
