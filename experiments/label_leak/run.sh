#!/usr/bin/env bash
# Paper A's FGSM-trained mixed-batch recipe at two widths and the demo's FGSM(ε=64) model, then
# the label-leak test with controls on 2000 test images. One thread each (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=${PYTHON:-python}
for run in kurakin_fgsm_w1 kurakin_fgsm_w2 demo_fgsm64; do
  $PY -m advscale train --config experiments/label_leak/$run.yaml --out runs/label_leak/$run --force
done
for run in kurakin_fgsm_w1 kurakin_fgsm_w2 demo_fgsm64; do
  $PY experiments/label_leak/measure.py runs/label_leak/$run \
      --out experiments/label_leak/results/$run.json
done
