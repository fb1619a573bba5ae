#!/usr/bin/env bash
# The transfer experiment of README.md, end to end (about an hour on 2 shared CPU cores).
# One torch thread: on a shared machine more threads mostly wait on each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
A=.venv/bin/advscale
OUT=${OUT:-runs/transfer}
# 1. Robust backbone: PGD-5 at ε=8 on Fashion-MNIST classes 0-4.
[ -f "$OUT/pretrain/summary.json" ] || $A train --config experiments/transfer/pretrain.yaml --out "$OUT/pretrain"
# 2. Fashion-MNIST -> digits: FGSM vs PGD-7, full fine-tuning and linear probing, ε = 4..32.
$A compare --config configs/compare_fmnist_digits.yaml --out "$OUT/digits" --set tensorboard=false
# 3. Control: the same architecture trained from scratch with FGSM at the same ε.
$A compare --config configs/compare_fmnist_digits.yaml --out "$OUT/digits_scratch" --set tensorboard=false \
  --set "compare.methods=[fgsm]" --set "compare.modes=[scratch]"
# 4. Fashion-MNIST classes 0-4 -> classes 5-9, and its from-scratch control.
$A compare --config experiments/transfer/compare_fmnist59.yaml --out "$OUT/fmnist59"
$A compare --config experiments/transfer/compare_fmnist59.yaml --out "$OUT/fmnist59_scratch" \
  --set "compare.methods=[fgsm]" --set "compare.modes=[scratch]"
