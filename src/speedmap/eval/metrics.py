"""``Metrics``: COCO's twelve summary numbers, per-class AP, and the curves behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SUMMARY_KEYS: tuple[str, ...] = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Metrics:
    """Result of :func:`speedmap.eval.evaluate`.

    ``stats`` are exactly pycocotools' ``COCOeval.stats`` (-1 where COCO leaves a number undefined:
    no ground truth in that area band). ``per_class`` maps class name to ``{"map", "map50"}``; a class
    without ground truth gets -1 and is excluded from the means, as COCO does, and is listed in
    ``classes_without_gt``. ``precision`` is COCO's interpolated precision for area "all" and 100
    detections, shape ``(10 IoU thresholds, 101 recall points, classes)``.
    """

    stats: np.ndarray
    classes: list[str]
    per_class: dict[str, dict[str, float]]
    classes_without_gt: list[str] = field(default_factory=list)
    precision: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> float:
        if name in SUMMARY_KEYS:
            return float(self.stats[SUMMARY_KEYS.index(name)])
        raise AttributeError(name)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {k: float(v) for k, v in zip(SUMMARY_KEYS, self.stats, strict=True)}
        doc["per_class"] = {n: {"map": v["map"], "map50": v["map50"]} for n, v in self.per_class.items()}
        return doc


def per_class_ap(precision: np.ndarray, k: int) -> tuple[float, float]:
    """COCO-style AP50-95 and AP50 for class column ``k`` of a ``(T, R, K)`` precision array."""
    p = precision[:, :, k]
    p50 = precision[0, :, k]
    ap = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    ap50 = float(p50[p50 > -1].mean()) if (p50 > -1).any() else -1.0
    return ap, ap50
