#!/usr/bin/env bash
# The transfer experiment of README.md, end to end (about an hour on 2 shared CPU cores).
# Reruns keep every finished point, so this also completes an interrupted run.
# One torch thread: on a shared machine more threads mostly wait on each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
A=.venv/bin/advscale
OUT=${OUT:-runs/transfer}
EPS="[4, 8, 16, 32, 48, 64]"
# 1. Robust backbone: PGD-5 at ε=8 on Fashion-MNIST classes 0-4.
[ -f "$OUT/pretrain/summary.json" ] || $A train --config experiments/transfer/pretrain.yaml --out "$OUT/pretrain"
# 2. Fashion-MNIST -> digits: FGSM vs PGD-7, full fine-tuning and linear probing.
$A compare --config configs/compare_fmnist_digits.yaml --out "$OUT/digits" --set tensorboard=false \
  --set "compare.eps=$EPS"
# 3. Control: the same architecture trained from scratch with FGSM at the same ε.
$A compare --config configs/compare_fmnist_digits.yaml --out "$OUT/digits_scratch" --set tensorboard=false \
  --set "compare.methods=[fgsm]" --set "compare.modes=[scratch]" --set "compare.eps=$EPS"
# 4. Fashion-MNIST classes 0-4 -> classes 5-9, and its from-scratch control.
$A compare --config experiments/transfer/compare_fmnist59.yaml --out "$OUT/fmnist59" \
  --set "compare.eps=[4, 8, 16, 32]"
$A compare --config experiments/transfer/compare_fmnist59.yaml --out "$OUT/fmnist59_scratch" \
  --set "compare.methods=[fgsm]" --set "compare.modes=[scratch]" --set "compare.eps=[4, 8, 16, 32]"
# 5. The committed copies of what README.md quotes.
for r in digits digits_scratch fmnist59 fmnist59_scratch; do
  mkdir -p "experiments/transfer/results/$r"
  cp "$OUT/$r/results.json" "$OUT/$r/compare.md" "$OUT/$r/compare.png" "experiments/transfer/results/$r/"
  # Each point's summary: its guard checks and events, which README.md quotes.
  for p in "$OUT/$r"/points/*/; do
    mkdir -p "experiments/transfer/results/$r/points/$(basename "$p")"
    cp "$p/summary.json" "experiments/transfer/results/$r/points/$(basename "$p")/"
  done
done
cp "$OUT/pretrain/summary.json" experiments/transfer/results/pretrain_summary.json
