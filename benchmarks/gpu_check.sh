#!/usr/bin/env bash
# The prepared GPU check (issue 27): on a machine with an NVIDIA GPU, in at most about 8 minutes, training speed
# per size (mixed precision) against the CPU, engine latency on the CUDA provider (batch 1 and micro-batched),
# the server at 100 in flight, and the quick study with the GPU destinations. Writes OUT/gpu_check.json.
#
#   benchmarks/gpu_check.sh [OUT]          # default OUT: runs/gpu-check
#
# Needs speedmap installed with the train extra, a CUDA build of PyTorch and onnxruntime-gpu in place of
# onnxruntime, e.g.  pip install -e '.[train]' && pip install onnxruntime-gpu  (see README, "Past one machine").
# Without a GPU it stops at once; `python benchmarks/gpu_check.py --cpu-only` runs the CPU columns instead.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu-check}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 540 python benchmarks/gpu_check.py --out "$OUT"
