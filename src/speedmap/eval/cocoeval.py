"""COCO bbox evaluation through faster-coco-eval, whose numbers equal pycocotools' (tests prove it).

Two entry points build the same COCO objects: :func:`evaluate_predictions` from a dataset split and
:class:`~speedmap.detections.Detections`, :func:`evaluate_files` from a GT annotation file and a
results file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from speedmap.data.build import unique_class_names
from speedmap.data.coco import real_categories, short_repr
from speedmap.data.dataset import DatasetSplit
from speedmap.data.problems import ProblemLog
from speedmap.detections import Detections
from speedmap.errors import SpeedmapError
from speedmap.eval.confusion import ConfusionMatrix, confusion_matrix, pairs_from_coco
from speedmap.eval.metrics import Metrics, per_class_ap
from speedmap.jsonfile import JsonFileError, read_json


class EvalError(SpeedmapError):
    """Predictions or ground truth that cannot be evaluated."""


EMPTY_NOTE = "no predictions: every AP/AR is 0 where there is ground truth (pycocotools itself fails here)"


def _quiet(*_: object) -> None:
    pass


def _accumulate(gt: COCO, res: COCO) -> COCOeval_faster:
    # One process: the C++ core already keeps both cores busy; splitting categories over forked
    # processes was measured and gave nothing (copy-on-write of the annotation dicts eats the gain).
    ev = COCOeval_faster(gt, res, "bbox", print_function=_quiet)
    ev.evaluate()
    ev.accumulate()
    return ev


def _run(gt_doc: dict[str, Any], dets: list[dict[str, Any]], class_cat_ids: list[int], names: list[str]) -> Metrics:
    """Evaluate ``dets`` (results format with ``area``/``id``/``iscrowd`` filled) against ``gt_doc``."""
    gt = COCO(gt_doc)
    res = COCO()
    res.dataset = {"images": gt_doc["images"], "categories": gt_doc["categories"], "annotations": dets}
    res.createIndex()
    ev = _accumulate(gt, res)
    ev.summarize()
    stats = np.asarray(ev.stats[:12], dtype=np.float64)
    cat_ids = list(ev.params.catIds)
    precision_all = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # area all, maxDets 100
    columns = [cat_ids.index(c) for c in class_cat_ids]
    precision = precision_all[:, :, columns]
    per_class, without = {}, []
    for k, name in enumerate(names):
        ap, ap50 = per_class_ap(precision, k)
        per_class[name] = {"map": ap, "map50": ap50}
        if ap < 0:
            without.append(name)
    notes = [] if dets else [EMPTY_NOTE]
    if without:
        notes.append(f"no ground truth for {', '.join(without)}: AP is -1 and excluded from the means (COCO rule)")
    return Metrics(stats, names, per_class, without, precision, notes)


def _with_result_fields(dets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``COCO.loadRes`` adds to bbox results: ``area`` (w*h), ``id`` (1-based), ``iscrowd`` 0."""
    for i, d in enumerate(dets, 1):
        bb = d["bbox"]
        d["area"] = bb[2] * bb[3]
        d["id"] = i
        d["iscrowd"] = 0
    return dets


def evaluate_predictions(split: DatasetSplit, predictions: Sequence[Detections]) -> Evaluation:
    """COCO metrics of ``predictions`` (one :class:`Detections` per record, same order) on ``split``."""
    if len(predictions) != len(split.records):
        raise EvalError(f"{len(predictions)} predictions for {len(split.records)} images: one per image is needed")
    nc = len(split.classes)
    images, anns, dets = [], [], []
    for i, (rec, det) in enumerate(zip(split.records, predictions, strict=True)):
        images.append({"id": i, "width": rec.width, "height": rec.height, "file_name": rec.path.name})
        wh = rec.boxes[:, 2:] - rec.boxes[:, :2]
        for box, size, c, crowd in zip(
            rec.boxes.tolist(), wh.tolist(), rec.class_ids.tolist(), rec.iscrowd.tolist(), strict=True
        ):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c + 1,
                    "bbox": [*box[:2], *size],
                    "area": size[0] * size[1],
                    "iscrowd": int(crowd),
                }
            )
        if len(det) and (det.class_id.min() < 0 or det.class_id.max() >= nc):
            raise EvalError(
                f"image {rec.path.name}: class ids {sorted(set(det.class_id.tolist()))} outside 0..{nc - 1}"
            )
        xy = det.xyxy.astype(np.float64)
        xywh = np.column_stack([xy[:, :2], xy[:, 2:] - xy[:, :2]]).tolist()
        for bb, s, c in zip(xywh, det.confidence.astype(np.float64).tolist(), det.class_id.tolist(), strict=True):
            dets.append({"image_id": i, "category_id": c + 1, "bbox": bb, "score": s})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(split.classes)]
    gt_doc = {"images": images, "annotations": anns, "categories": cats}
    ids = [k + 1 for k in range(nc)]
    return Evaluation(_run(gt_doc, _with_result_fields(dets), ids, list(split.classes)), gt_doc, dets, ids)


def _load(path: Path, what: str) -> Any:
    try:
        return read_json(path)
    except JsonFileError as exc:
        raise EvalError(f"{what} {path}: {exc}") from exc


def check_gt(doc: Any, path: Path) -> dict[str, Any]:
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("images"), list)
        or not isinstance(doc.get("annotations"), list)
    ):
        raise EvalError(f"{path}: a COCO annotation file needs 'images', 'annotations' and 'categories' lists")
    for k, ann in enumerate(doc["annotations"]):
        bb = ann.get("bbox") if isinstance(ann, dict) else None
        if not isinstance(bb, list) or len(bb) != 4 or not all(isinstance(v, int | float) for v in bb):
            raise EvalError(f"{path}: annotations[{k}] needs a bbox of 4 numbers, got {short_repr(ann)}")
        if "area" not in ann:  # pycocotools would fail; the box area is the usual stand-in
            ann["area"] = bb[2] * bb[3]
    return doc


def check_predictions(preds: Any, path: Path, image_ids: set[Any], cat_ids: set[int]) -> list[dict[str, Any]]:
    """Validate results-format predictions; unknown image or category ids are an error naming them."""
    if isinstance(preds, dict) and "annotations" in preds:
        raise EvalError(
            f"{path}: this looks like an annotation file; predictions are a JSON list of "
            "{image_id, category_id, bbox: [x, y, w, h], score}"
        )
    if not isinstance(preds, list):
        raise EvalError(f"{path}: predictions must be a JSON list of {{image_id, category_id, bbox, score}}")
    try:  # one pass per field; the slow per-item search runs only to word an error
        image_ids_seen = {d["image_id"] for d in preds}
        cat_ids_seen = {d["category_id"] for d in preds}
        arr = np.array([d["bbox"] for d in preds], dtype=np.float64).reshape(-1, 4)
        scores = np.array([d["score"] for d in preds], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        for k, d in enumerate(preds):
            if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= d.keys():
                msg = f"item {k} needs image_id, category_id, bbox and score, got {short_repr(d)}"
                raise EvalError(f"{path}: {msg}") from exc
        raise EvalError(f"{path}: every bbox must be 4 numbers [x, y, w, h] and every score a number") from exc
    if len(arr) != len(preds) or not np.isfinite(arr).all() or not np.isfinite(scores).all():
        raise EvalError(f"{path}: every bbox must be 4 finite numbers [x, y, w, h] and every score finite")
    bad_img = sorted(image_ids_seen - image_ids, key=str)
    if bad_img:
        raise EvalError(
            f"{path}: predictions for {len(bad_img)} image id(s) not in the ground truth: "
            f"{', '.join(map(str, bad_img[:10]))}{' ...' if len(bad_img) > 10 else ''}"
        )
    bad_cat = sorted(cat_ids_seen - cat_ids, key=str)
    if bad_cat:
        raise EvalError(
            f"{path}: predictions use category id(s) not in the ground truth: {', '.join(map(str, bad_cat[:10]))}"
        )
    return preds


@dataclass
class Evaluation:
    """:func:`evaluate_files`' result: the metrics and what they were computed from."""

    metrics: Metrics
    gt: dict[str, Any]
    predictions: list[dict[str, Any]]
    category_ids: list[int]  # COCO category id of each class, in ``metrics.classes`` order

    def confusion(self, conf: float = 0.25, iou: float = 0.5) -> ConfusionMatrix:
        pairs = pairs_from_coco(self.gt, self.predictions, self.category_ids)
        return confusion_matrix(pairs, self.metrics.classes, conf, iou)


def evaluate_files(gt_path: str | Path, pred_path: str | Path) -> Evaluation:
    """Evaluate a COCO results file against a COCO annotation file."""
    gt_path, pred_path = Path(gt_path), Path(pred_path)
    gt_doc = check_gt(_load(gt_path, "ground truth"), gt_path)
    try:
        ids, names = real_categories([(gt_path, gt_doc)])
    except SpeedmapError as exc:
        raise EvalError(str(exc)) from exc
    names = unique_class_names(names, gt_path, ProblemLog())
    all_cat_ids = {c["id"] for c in gt_doc["categories"]}
    image_ids = {im.get("id") for im in gt_doc["images"] if isinstance(im, dict)}
    preds = check_predictions(_load(pred_path, "predictions"), pred_path, image_ids, all_cat_ids)
    # COCOeval (pycocotools and faster-coco-eval alike) stores matched ground-truth ids and reads 0 as
    # "unmatched": a detection matched to annotation id 0 would count as a false positive. Roboflow's
    # exports number annotations from 0, so ids are renumbered from 1 (they carry no other meaning here).
    for k, ann in enumerate(gt_doc["annotations"], 1):
        ann["id"] = k
    metrics = _run(gt_doc, _with_result_fields(preds), ids, names)
    return Evaluation(metrics, gt_doc, preds, ids)
