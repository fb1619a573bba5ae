#!/usr/bin/env bash
# Paper A analogues on Fashion-MNIST: the capacity sweep (Fig. 1) and a transfer table (Sec. 4.3)
# between the models it trains. Run from the repository root: bash experiments/analysis/run.sh
set -euo pipefail
ADVSCALE=${ADVSCALE:-.venv/bin/advscale}
OUT=runs/analysis
# Tiny models: one thread per process is as fast and does not fight other work for the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

"$ADVSCALE" sweep --config experiments/analysis/capacity_sweep.yaml --out "$OUT/capacity"

M="$OUT/capacity"
"$ADVSCALE" transfer-matrix \
  --models "$M/baseline/width_0.5/model,$M/baseline/width_1/model,$M/kurakin/width_0.5/model,$M/kurakin/width_1/model" \
  --attacks fgsm,iter_basic,iter_ll --eps 4,16 --n 300 --device cpu --out "$OUT/transfer"

"$ADVSCALE" report "$OUT/capacity" "$OUT/transfer" --out "$OUT/report.html"

# The committed copies of what README.md quotes.
mkdir -p experiments/analysis/results/capacity experiments/analysis/results/transfer
cp "$OUT/capacity/results.json" experiments/analysis/results/capacity/
cp "$OUT/transfer/results.json" experiments/analysis/results/transfer/
