"""``Detections``: the one result type every part of speedmap passes around (engine, eval, serve)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Boxes found in one image: ``xyxy`` absolute pixels (N, 4), ``confidence`` (N,), ``class_id`` (N,).

    ``names`` maps class ids to class names (the model's classes); ``image_size`` is the original
    image's ``(width, height)`` when known.
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    class_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    names: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        self.names = tuple(self.names)
        if not (len(self.xyxy) == len(self.confidence) == len(self.class_id)):
            raise ValueError("xyxy, confidence and class_id must have the same length")

    def __len__(self) -> int:
        return len(self.class_id)

    def __getitem__(self, index: slice | np.ndarray) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.names, self.image_size)

    @property
    def class_name(self) -> list[str]:
        """Class name of each box (the id as text when the model's names are unknown)."""
        n = len(self.names)
        return [self.names[c] if 0 <= c < n else str(c) for c in self.class_id.tolist()]

    def to_roboflow(self) -> dict[str, Any]:
        """Roboflow's hosted-API JSON: ``image`` size and ``predictions`` with the box centre ``x``/``y``,
        ``width``, ``height`` in original-image pixels, ``confidence``, ``class``, ``class_id``,
        ``detection_id``. Servers add ``inference_id`` and ``time``."""
        preds = []
        for (x1, y1, x2, y2), conf, cid, name in zip(
            self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist(), self.class_name, strict=True
        ):
            preds.append(
                {
                    "x": round((x1 + x2) / 2, 1),
                    "y": round((y1 + y2) / 2, 1),
                    "width": round(x2 - x1, 1),
                    "height": round(y2 - y1, 1),
                    "confidence": round(conf, 4),
                    "class": name,
                    "class_id": cid,
                    "detection_id": str(uuid.uuid4()),
                }
            )
        out: dict[str, Any] = {"predictions": preds}
        if self.image_size is not None:
            out = {"image": {"width": self.image_size[0], "height": self.image_size[1]}, **out}
        return out

    def to_coco(self, image_id: int, category_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries (``bbox`` as x, y, w, h); ``category_ids[k]`` is class k's category id
        (default: k + 1, the ids speedmap writes)."""
        out = []
        for (x1, y1, x2, y2), conf, cid in zip(
            self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist(), strict=True
        ):
            cat = category_ids[cid] if category_ids is not None else cid + 1
            out.append({"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": conf})
        return out

    def to_supervision(self) -> Any:
        """A ``supervision.Detections`` (needs ``pip install supervision``), class names under ``data``."""
        try:
            import supervision as sv
        except ImportError as exc:
            raise ImportError("to_supervision() needs the supervision package: pip install supervision") from exc
        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32),
            confidence=self.confidence,
            class_id=self.class_id.astype(int),
            data={"class_name": np.asarray(self.class_name, dtype=object)},
        )
