"""What the benchmark scripts share: the machine line every printed result starts with, markdown tables, and
training runs that are reused once finished (a killed script continues where it stopped).

    from harness import machine_line, md_table, paired_points, score_test_split, trained

Scripts run from the repository root (``python benchmarks/bench_x.py``), so this folder is on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def machine_line(*details: str) -> str:
    """``machine: x86_64, 2 cpus (2 usable), Python 3.11.7, torch 2.x, onnxruntime 1.x; DETAILS``: the versions
    of the libraries the script has imported, so a number is never quoted without what produced it."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [
        f"{platform.processor() or platform.machine()}",
        f"{os.cpu_count()} cpus ({usable} usable)",
        f"Python {platform.python_version()}",
    ]
    for name in ("torch", "onnxruntime"):
        mod = sys.modules.get(name)
        if mod is not None:
            parts.append(f"{name} {getattr(mod, '__version__', '?')}")
    tail = "; ".join(d for d in details if d)
    return "machine: " + ", ".join(parts) + (f"; {tail}" if tail else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (cells as given, turned to text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def trained(run: Path, **cfg: Any) -> dict[str, Any]:
    """The record (``train.json``) of a training run in ``run`` with ``TrainConfig(**cfg)``: reused when it
    finished, resumed from ``last.pt`` when it was interrupted, else trained here. Adds ``wall_s``."""
    from speedmap.train.config import TrainConfig
    from speedmap.train.trainer import train

    done = run / "train.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        if rec.get("finished") or rec.get("epochs_run", 0) >= rec.get("epochs_planned", cfg.get("epochs", 1) + 1):
            return rec
    config = TrainConfig(**{**cfg, "out": str(run)})
    config.resume = (run / "last.pt").is_file()
    t0 = time.perf_counter()
    rec = train(config, log=lambda m: None)
    rec["finished"], rec["wall_s"] = True, round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps(rec, indent=1))
    return rec


def score_test_split(run_dir: Path, data: Path) -> Any:
    """The best checkpoint's test-split evaluation, through the trainer's validation path: metrics, ground truth
    and predictions (for :func:`paired_points`)."""
    import torch

    from speedmap.data import load_dataset
    from speedmap.eval import evaluate_predictions
    from speedmap.train.checkpoint import load_checkpoint, model_from_checkpoint
    from speedmap.train.data import ValData
    from speedmap.train.validate import predict_split

    ckpt = load_checkpoint(run_dir / "best.pt")
    view = load_dataset(data, auto_split=True).split("test")
    dets = predict_split(model_from_checkpoint(ckpt), ValData(view, ckpt["imgsz"]), torch.device("cpu"))
    return evaluate_predictions(view, dets)


def paired_points(a: Any, b: Any) -> str:
    """b - a in points of test mAP50-95, with the 95% paired-bootstrap interval over the test images (the same
    images score both: how much of the change the test split can resolve)."""
    from speedmap.eval.bootstrap import paired_bootstrap

    bs = paired_bootstrap(a.gt, a.predictions, b.predictions, resamples=1000, seed=0)
    lo, hi = bs.delta_map.low, bs.delta_map.high
    return f"{100 * (b.metrics.map - a.metrics.map):+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
