"""A run's logs: the per-epoch ``metrics.csv`` and the CPU summary ``train.json`` gives."""

from __future__ import annotations

import csv
from dataclasses import fields
from pathlib import Path
from typing import Any

from speedmap.cpustat import CONTENDED_SHARE
from speedmap.train.config import EpochLog


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    keys = [f.name for f in fields(EpochLog)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for h in history:
            w.writerow({k: h.get(k) for k in keys})


def cpu_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU seconds of the run, and how much of the machine other processes took (wall-time-weighted mean
    over epochs, the worst epoch, and the epochs above :data:`CONTENDED_SHARE`)."""
    cpu = [h.get("cpu_seconds") for h in history]
    known = [(h["other_cpu_share"], h["seconds"], h["epoch"]) for h in history if h.get("other_cpu_share") is not None]
    wall = sum(w for _, w, _ in known)
    mean = sum(s * w for s, w, _ in known) / wall if wall > 0 else None
    return {
        "cpu_seconds": round(sum(c for c in cpu if c is not None), 3) if any(c is not None for c in cpu) else None,
        "other_cpu_share": None if mean is None else round(mean, 4),
        "other_cpu_share_max": max((s for s, _, _ in known), default=None),
        "contended": mean is not None and mean > CONTENDED_SHARE,
        "contended_epochs": [e for s, _, e in known if s > CONTENDED_SHARE],
    }
