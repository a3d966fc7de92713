"""Which device a training run uses (``--device auto | cpu | cuda | cuda:N``) and how it computes there."""

from __future__ import annotations

import os

import torch

from speedmap.train.checkpoint import TrainError

AUTO = "auto"
MAX_GPU_WORKERS = 8  # data-loading processes that keep one GPU fed; more only cost memory


def resolve_device(spec: str) -> str:
    """The torch device name for ``spec``: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU. Asking for a
    GPU that is not there fails here, before any data is read."""
    spec = (spec or AUTO).strip().lower()
    if spec == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "this PyTorch is a CPU build" if torch.version.cuda is None else "no NVIDIA GPU or driver is visible"
            raise TrainError(f"--device {spec}: PyTorch sees no CUDA device ({why}); use --device cpu or auto")
        index = spec.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise TrainError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return spec
    raise TrainError(f"--device {spec!r}: choose auto, cpu, cuda or cuda:N")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast precision of mixed-precision training: bf16 where the GPU computes it natively (Ampere and
    newer: no loss scaling needed), else fp16 with a gradient scaler; None (fp32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def default_workers(device: str = "cpu") -> int:
    """Data-loading processes: none on a 2-core machine (they would take the cores the model trains on), half
    the cores above that; on a GPU, where the model no longer needs the CPU, most of the cores up to 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, min(MAX_GPU_WORKERS, cpus - 1))
    return 0 if cpus <= 2 else min(4, cpus // 2)
