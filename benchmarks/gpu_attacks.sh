#!/usr/bin/env bash
# The attack benchmarks on a GPU, as one prepared run (about 10 minutes on one H100/H200):
# attack_speed (PGD-10) and autoattack_compare (strong preset vs the reference AutoAttack) on
# PreAct ResNet-18 models trained here on Fashion-MNIST padded to 32x32 and repeated to 3
# channels (CIFAR-10's shape; CIFAR-10 itself need not be on the machine).
#
#   bash benchmarks/gpu_attacks.sh            # cuda, full size; results in benchmarks/results/*_cuda.*
#   TINY=1 DEVICE=cpu bash benchmarks/gpu_attacks.sh   # a minute on a CPU: the same code path
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results}
MODELS=${MODELS:-runs/autoattack_compare_preact}
common=(--device "$DEVICE" --arch preact_resnet18 --cifar-shaped)
if [[ -n ${TINY:-} ]]; then
  speed=(--width 0.125 --n-train 128 --epochs 1 --n 32 --batch-size 16 --reps 1 --threads 1)
  compare=(--width 0.125 --n-train 128 --epochs 1 --n 16 --threads 1 --only pgd)
else
  speed=(--width 1 --n-train 20000 --epochs 3 --n 4096 --batch-size 512 --reps 5)
  compare=(--width 1 --n-train 20000 --epochs 5 --n 1000)
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PY" benchmarks/attack_speed.py "${common[@]}" "${speed[@]}" --out "$OUT/attack_speed_$DEVICE"
"$PY" benchmarks/autoattack_compare.py "${common[@]}" "${compare[@]}" \
  --models-dir "$MODELS" --out "$OUT/autoattack_compare_$DEVICE"
