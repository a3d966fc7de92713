"""The confidence threshold that maximises F1: what a served model uses for Roboflow's
``confidence: "best"`` (measured at export, stored in ``model.json``).

Matching is COCO's, at one IoU: per image and class, detections by decreasing confidence each take the
unmatched ground-truth box of highest IoU (at least ``iou``); each ground-truth box is matched once. A
detection that matches no ordinary box but lies in a crowd region of its class (intersection over the
detection's area at least ``iou``, COCO's crowd rule) is ignored: neither true nor false positive;
crowd boxes are never counted as ground truth to find.

Because matching goes from the highest confidence down, whether a detection is a true positive does not
depend on the threshold: keeping the detections with ``confidence >= t`` keeps exactly a prefix of
that order, and their matches. So one matching pass gives true and false positives at every threshold,
and F1 only changes at the detections' confidences: the candidates are the distinct confidences (the
exact maximum, where a 0.01 grid could miss it by up to a step, for no saving: the counts at every
candidate are one cumulative sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speedmap.boxes import box_area, box_intersection, box_iou
from speedmap.data.dataset import DatasetSplit, ImageRecord
from speedmap.detections import Detections
from speedmap.eval.cocoeval import EvalError

MIN_CONFIDENCE, MAX_CONFIDENCE = 0.01, 0.99
# Roboflow's default confidence (inference-sdk): the answer when nothing can be measured.
FALLBACK_CONFIDENCE = 0.4


@dataclass(frozen=True)
class BestThreshold:
    """A confidence threshold (keep detections with ``confidence >= confidence``) and F1, precision and
    recall of the detections it keeps."""

    confidence: float
    f1: float
    precision: float
    recall: float


FALLBACK = BestThreshold(FALLBACK_CONFIDENCE, 0.0, 0.0, 0.0)


def best_confidence(
    predictions: Sequence[Detections], ground_truth: DatasetSplit | Sequence[ImageRecord], iou: float = 0.5
) -> BestThreshold:
    """The confidence threshold in ``[0.01, 0.99]`` of highest F1 over all classes (micro: true
    positives, false positives and ground-truth boxes summed over images and classes).

    ``predictions``: one :class:`Detections` per record of ``ground_truth``, same order, such as
    :func:`speedmap.eval.model.predict_records` gives. Class ids are read in the dataset's numbering;
    when ``ground_truth`` is a :class:`DatasetSplit` and a detection's ``names`` differ from its
    classes, ids are mapped by name (classes the dataset lacks are dropped), as
    :func:`~speedmap.eval.model.class_mapping` does for the engine.

    Among equal F1, the highest threshold wins (fewer detections for the same F1). Thresholds are
    searched within ``[0.01, 0.99]`` only (the best of those, not a clamped best of all). Without
    predictions, without ground truth, or without a true positive at 0.01 or above (F1 0 everywhere), the
    answer is :data:`FALLBACK`: confidence 0.4 (Roboflow's default), F1, precision and recall 0.
    """
    records = ground_truth.records if isinstance(ground_truth, DatasetSplit) else list(ground_truth)
    classes = tuple(ground_truth.classes) if isinstance(ground_truth, DatasetSplit) else None
    if len(predictions) != len(records):
        raise EvalError(f"{len(predictions)} predictions for {len(records)} images: one per image is needed")
    scores, tps, n_gt = [], [], 0
    for rec, det in zip(records, predictions, strict=True):
        det_cls = _dataset_ids(det, classes)
        keep = det_cls >= 0
        tp, counted = match_image(
            rec.boxes,
            rec.class_ids,
            rec.iscrowd,
            det.xyxy[keep].astype(np.float64),
            det.confidence[keep],
            det_cls[keep],
            iou,
        )
        scores.append(det.confidence[keep][counted].astype(np.float64))
        tps.append(tp[counted])
        n_gt += int((~rec.iscrowd).sum())
    score = np.concatenate(scores) if scores else np.zeros(0)
    tp = np.concatenate(tps) if tps else np.zeros(0, dtype=bool)
    if n_gt == 0 or len(score) == 0 or not tp.any():
        return FALLBACK
    order = np.argsort(-score, kind="stable")
    score, cum_tp = score[order], np.cumsum(tp[order])
    # Thresholds: the distinct confidences, clamped (a confidence above 0.99 is reached from 0.99, one
    # below 0.01 from 0.01); from the highest down, so that the first maximum is the highest threshold.
    cand = np.unique(np.clip(score, MIN_CONFIDENCE, MAX_CONFIDENCE))[::-1]
    kept = len(score) - np.searchsorted(score[::-1], cand, side="left")  # detections with score >= t
    tp_at = np.where(kept > 0, cum_tp[np.maximum(kept - 1, 0)], 0)
    f1 = 2 * tp_at / (kept + n_gt)  # 2PR / (P + R) = 2 TP / (kept + GT)
    best = int(np.argmax(f1))
    if tp_at[best] == 0:  # every true positive under 0.01
        return FALLBACK
    t, n = int(tp_at[best]), int(kept[best])
    return BestThreshold(float(cand[best]), 2 * t / (n + n_gt), t / n, t / n_gt)


def _dataset_ids(det: Detections, classes: tuple[str, ...] | None) -> np.ndarray:
    """Class ids of ``det`` in the dataset's numbering (-1: a class the dataset lacks)."""
    if classes is None or not det.names or det.names == classes:
        return det.class_id
    index = {name: i for i, name in enumerate(classes)}
    mapping = np.asarray([index.get(n, -1) for n in det.names], dtype=np.int64)
    ok = (det.class_id >= 0) & (det.class_id < len(mapping))
    return np.where(ok, mapping[np.clip(det.class_id, 0, len(mapping) - 1)], -1)


def match_image(
    gt_box: np.ndarray,
    gt_cls: np.ndarray,
    crowd: np.ndarray,
    dt_box: np.ndarray,
    score: np.ndarray,
    dt_cls: np.ndarray,
    iou: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """COCO matching of one image's detections: ``(tp, counted)``, boolean per detection in the given
    order; ``counted`` is False for detections ignored in a crowd region."""
    n = len(score)
    tp = np.zeros(n, dtype=bool)
    counted = np.ones(n, dtype=bool)
    if n == 0:
        return tp, counted
    crowd = np.asarray(crowd, dtype=bool)
    same = dt_cls[:, None] == gt_cls[None, :]
    real = ~crowd
    ious = np.where(same[:, real], box_iou(dt_box, gt_box[real]), -1.0)
    ious[ious < iou] = -1.0
    candidates = (ious >= 0).any(axis=1)
    if candidates.any():
        used = np.zeros(ious.shape[1], dtype=bool)
        order = np.argsort(-score, kind="stable")  # COCO sorts by score with a stable sort too
        for d in order[candidates[order]]:
            row = np.where(used, -1.0, ious[d])
            g = len(row) - 1 - int(np.argmax(row[::-1]))  # COCO keeps the last box of equal IoU
            if row[g] >= 0:
                used[g] = tp[d] = True
    if crowd.any():
        area = box_area(dt_box)
        inter = box_intersection(dt_box, gt_box[crowd])
        ioa = np.divide(inter, area[:, None], out=np.zeros_like(inter), where=area[:, None] > 0)
        in_crowd = ((ioa >= iou) & same[:, crowd]).any(axis=1)
        counted &= tp | ~in_crowd
    return tp, counted
