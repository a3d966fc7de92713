"""From raw network output to :class:`Detections`: confidence filter, NMS, top-k (numpy only).

Shared by training validation and the inference engine, with the same semantics everywhere.
"""

from __future__ import annotations

import numpy as np

from speedmap.detections import Detections

MAX_CANDIDATES = 3000  # highest-scoring boxes that enter NMS
# Thresholds for measuring mAP (training validation and `speedmap eval --model`): keep nearly every box.
EVAL_CONF, EVAL_IOU, EVAL_MAX_DET = 0.001, 0.7, 300


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices by decreasing score."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        ov = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[ov <= iou]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    pred: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: list[int] | None = None,
    agnostic: bool = False,
) -> Detections:
    """``pred``: ``(N, 4 + nc)`` boxes xyxy and class probabilities of one image.

    Each cell keeps its best class; cells under ``conf`` are dropped; NMS runs per class (across
    classes with ``agnostic``); at most ``max_det`` boxes remain, best first.
    """
    boxes, probs = pred[:, :4], pred[:, 4:]
    cls = probs.argmax(1)
    score = probs[np.arange(len(probs)), cls]
    keep = score >= conf
    if classes is not None:
        keep &= np.isin(cls, classes)
    boxes, score, cls = boxes[keep], score[keep], cls[keep]
    if len(score) > MAX_CANDIDATES:
        top = np.argpartition(-score, MAX_CANDIDATES)[:MAX_CANDIDATES]
        boxes, score, cls = boxes[top], score[top], cls[top]
    if len(score) == 0:
        return Detections()
    # per-class NMS in one pass: each class moved by a span wider than all boxes (negative ones included)
    shift = 0.0 if agnostic else cls[:, None].astype(boxes.dtype) * (2.0 * float(np.abs(boxes).max()) + 1.0)
    kept = nms(boxes + shift, score, iou)[:max_det]
    return Detections(boxes[kept], score[kept], cls[kept])
