"""``Detections``: the one result type every part of speedmap passes around (engine, eval, serve)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Boxes found in one image: ``xyxy`` absolute pixels (N, 4), ``confidence`` (N,), ``class_id`` (N,)."""

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if not (len(self.xyxy) == len(self.confidence) == len(self.class_id)):
            raise ValueError("xyxy, confidence and class_id must have the same length")

    def __len__(self) -> int:
        return len(self.class_id)

    def __getitem__(self, index: slice | np.ndarray) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])
