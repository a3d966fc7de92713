"""The machine the engine runs on: CPUs actually available to this process, and ONNX Runtime providers."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from speedmap.errors import SpeedmapError

if TYPE_CHECKING:
    import onnxruntime

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}


class ProviderError(SpeedmapError):
    """An execution provider was asked for but is not installed."""


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPU quota of this process's cgroup in cores (v2 ``cpu.max`` or v1 CFS quota); None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """Cores this process may use: the affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """The engine's ONNX Runtime settings: ``threads`` intra-op threads, one inter-op thread, sequential
    execution, every graph optimisation. Benchmarks time other graphs (peers, candidates) with these too."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def resolve_providers(providers: str | list[str] | None) -> list[str]:
    """ONNX Runtime provider names from aliases (``cpu``, ``cuda``, ``tensorrt``, ``openvino``) or full
    names; CPU is always appended as the fallback. Asking for an uninstalled provider is an error."""
    import onnxruntime as ort

    if providers is None:
        return ["CPUExecutionProvider"]
    items = [p.strip() for p in providers.split(",")] if isinstance(providers, str) else list(providers)
    available = ort.get_available_providers()
    out = []
    for p in items:
        if not p:
            continue
        name = PROVIDER_ALIASES.get(p.lower(), p)
        if name not in available:
            raise ProviderError(
                f"execution provider {p!r} is not available in this onnxruntime build "
                f"(available: {', '.join(available)}); install e.g. onnxruntime-gpu or onnxruntime-openvino"
            )
        if name not in out:
            out.append(name)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out
