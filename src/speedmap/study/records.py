"""What the study keeps of a training run and of benchmark repeats (the shapes of ``results.json``)."""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

from speedmap.study.results import Accuracy, RunSummary


def train_threads() -> int:
    """The CPU threads training runs on (torch's default: the cores this process may use)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pair(v: Any) -> tuple[float, float] | None:
    return None if v is None else (float(v[0]), float(v[1]))


def accuracy(m: dict[str, Any]) -> Accuracy:
    return Accuracy(m["map"], m["map50"], pair(m.get("map_ci95")), pair(m.get("map50_ci95")))


def run_summary(runs: list[Any]) -> dict[str, Any]:
    """Interleaved repeats of one scenario for one model: medians, and VALID only if every repeat was."""
    med = lambda vals: statistics.median(vals) if vals else None  # noqa: E731
    return dataclasses.asdict(
        RunSummary(
            p50_ms=med([r.p50_ms for r in runs if r.p50_ms is not None]) or 0.0,
            p90_ms=med([r.p90_ms for r in runs if r.p90_ms is not None]),
            throughput_rps=med([r.throughput_rps for r in runs]) or 0.0,
            valid=all(r.valid for r in runs),
            errors=sum(r.error_count for r in runs),
            concurrency=runs[0].concurrency or 1,
            repeats=len(runs),
            unstable_repeats=sum(not r.valid for r in runs),
            other_cpu_share=max((r.other_cpu_share for r in runs if r.other_cpu_share is not None), default=None),
        )
    )


TRAIN_FIELDS = (
    "size",
    "params",
    "flops",
    "imgsz",
    "total_seconds",
    "cpu_seconds",
    "train_images_per_second",
    "best_epoch",
    "best_map",
    "best_map50",
    "converged",
    "convergence",
    "contended",
    "other_cpu_share",
    "time_to_95_seconds",
    "epoch_to_95",
    "budget",
)


def browser_ratios(runs: dict[str, list[Any]]) -> list[float]:
    """Accurate's p50 latency over Fast's, per finished pair of browser runs."""
    return [a.p50_ms / f.p50_ms for f, a in zip(runs["fast"], runs["accurate"], strict=False)]


def train_result(record: dict[str, Any], run: Path) -> dict[str, Any]:
    """A training run's record (``train.json``) and per-epoch log, as the study keeps them."""
    doc = {k: record.get(k) for k in TRAIN_FIELDS}
    doc.update(
        epochs_run=record.get("epochs_run", record["epochs"]),
        epochs_max=record.get("epochs_planned"),
        run=str(run),
        train_images=record["dataset"]["train_images"],
        history=_history(run),
    )
    doc["converged"] = bool(doc["converged"])
    doc["contended"] = bool(doc["contended"])
    doc["convergence"] = doc["convergence"] or {}
    return doc


def _history(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return rows
