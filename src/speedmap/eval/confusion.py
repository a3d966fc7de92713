"""Confusion matrix at a stated confidence and IoU, with a background row and column."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from speedmap.boxes import box_intersection, box_iou, xywh_to_xyxy


@dataclass
class ConfusionMatrix:
    """``matrix[true, predicted]``; index ``len(classes)`` is background.

    A ground-truth box matched to no detection counts as (its class, background): a miss. A
    detection matched to no ground truth counts as (background, its class): a false positive, unless
    it lies inside a crowd region (COCO's ignore rule). Matching is one-to-one, class-agnostic,
    highest IoU first, among detections with ``confidence >= conf`` and IoU ``>= iou``.
    """

    classes: list[str]
    conf: float
    iou: float
    matrix: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "classes": [*self.classes, "background"],
            "conf": self.conf,
            "iou": self.iou,
            "rows": "true class",
            "columns": "predicted class",
            "matrix": self.matrix.astype(int).tolist(),
        }


ImageTruth = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy, class, crowd
ImagePred = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy, score, class


def confusion_matrix(
    pairs: Iterable[tuple[ImageTruth, ImagePred]], classes: list[str], conf: float = 0.25, iou: float = 0.5
) -> ConfusionMatrix:
    nc = len(classes)
    m = np.zeros((nc + 1, nc + 1), dtype=np.int64)
    for (gt_box, gt_cls, crowd), (dt_box, score, dt_cls) in pairs:
        keep = score >= conf
        dt_box, dt_cls = dt_box[keep], dt_cls[keep]
        crowd_box = gt_box[crowd]
        gt_box, gt_cls = gt_box[~crowd], gt_cls[~crowd]
        ious = box_iou(gt_box, dt_box)
        g_idx, d_idx = np.nonzero(ious >= iou)
        order = np.argsort(-ious[g_idx, d_idx], kind="stable")
        used_g = np.zeros(len(gt_box), dtype=bool)
        used_d = np.zeros(len(dt_box), dtype=bool)
        for g, d in zip(g_idx[order], d_idx[order], strict=True):
            if not used_g[g] and not used_d[d]:
                used_g[g] = used_d[d] = True
                m[gt_cls[g], dt_cls[d]] += 1
        np.add.at(m, (gt_cls[~used_g], nc), 1)
        fp = ~used_d
        if len(crowd_box) and fp.any():  # inside a crowd region: ignored, not a false positive
            area = np.clip(dt_box[:, 2:] - dt_box[:, :2], 0, None).prod(axis=1)
            inside = box_intersection(dt_box, crowd_box).max(axis=1) >= iou * np.maximum(area, 1e-12)
            fp &= ~inside
        np.add.at(m, (nc, dt_cls[fp]), 1)
    return ConfusionMatrix(list(classes), conf, iou, m)


def pairs_from_coco(
    gt_doc: dict[str, Any], preds: list[dict[str, Any]], class_cat_ids: list[int]
) -> Iterator[tuple[ImageTruth, ImagePred]]:
    """Per-image arrays from a COCO GT document and results list; categories outside the class list
    (such as Roboflow's unused project category) are left out."""
    index = {c: k for k, c in enumerate(class_cat_ids)}
    gts: dict[Any, list[tuple[list[float], int, bool]]] = {}
    dts: dict[Any, list[tuple[list[float], float, int]]] = {}
    for a in gt_doc["annotations"]:
        if a.get("category_id") in index:
            gts.setdefault(a.get("image_id"), []).append((a["bbox"], index[a["category_id"]], bool(a.get("iscrowd"))))
    for d in preds:
        if d["category_id"] in index:
            dts.setdefault(d["image_id"], []).append((d["bbox"], d["score"], index[d["category_id"]]))
    for im in gt_doc["images"]:
        g, d = gts.get(im.get("id"), []), dts.get(im.get("id"), [])
        gb = xywh_to_xyxy(np.array([x[0] for x in g], dtype=np.float64).reshape(-1, 4))
        db = xywh_to_xyxy(np.array([x[0] for x in d], dtype=np.float64).reshape(-1, 4))
        yield (
            (gb, np.array([x[1] for x in g], dtype=np.int64), np.array([x[2] for x in g], dtype=bool)),
            (db, np.array([x[1] for x in d], dtype=np.float64), np.array([x[2] for x in d], dtype=np.int64)),
        )
