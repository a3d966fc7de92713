"""COCO metrics of an exported model on a dataset split, run through the inference engine: the same
code path that serves predictions, so the mAP reported is the mAP served."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from speedmap.data.dataset import DatasetSplit
from speedmap.detections import Detections
from speedmap.eval.cocoeval import EvalError, Evaluation, evaluate_predictions
from speedmap.imageio import ImageReadError
from speedmap.postprocess import EVAL_CONF, EVAL_IOU, EVAL_MAX_DET

if TYPE_CHECKING:
    from speedmap.engine import Model, Prepared


def class_mapping(model_names: tuple[str, ...], data_classes: list[str]) -> np.ndarray:
    """For each model class id, the dataset's class index with the same name (-1 when absent)."""
    index = {name: i for i, name in enumerate(data_classes)}
    mapping = np.asarray([index.get(n, -1) for n in model_names], dtype=np.int64)
    if (mapping < 0).all():
        raise EvalError(
            f"the model's classes ({', '.join(model_names)}) share no name with the dataset's "
            f"({', '.join(data_classes)})"
        )
    return mapping


def _prepare(model: Model, path: Path, split: str) -> Prepared:
    try:
        return model.prepare(path)
    except ImageReadError as exc:  # name the image: a local file, never a server's message
        raise ImageReadError(f"image {path.name} of the {split} split: {exc}") from None


def predict_records(
    model: Model, split: DatasetSplit, batch: int = 8, advance: Callable[[int], None] | None = None
) -> list[Detections]:
    """Detections for every record of ``split`` at evaluation thresholds, class ids in the dataset's
    numbering (predictions of classes the dataset lacks are dropped)."""
    mapping = class_mapping(model.names, split.classes)
    out: list[Detections] = []
    for i in range(0, len(split.records), batch):
        recs = split.records[i : i + batch]
        prepared = [_prepare(model, r.path, split.name) for r in recs]
        for pred, pr in zip(model.forward([p.square for p in prepared]), prepared, strict=True):
            det = model.finish(pred, pr, conf=EVAL_CONF, iou=EVAL_IOU, max_det=EVAL_MAX_DET)
            ids = mapping[det.class_id]
            keep = ids >= 0
            names = tuple(split.classes)
            out.append(Detections(det.xyxy[keep], det.confidence[keep], ids[keep], names, det.image_size))
        if advance is not None:
            advance(len(recs))
    return out


def evaluate_model(
    model: Model, split: DatasetSplit, batch: int = 8, advance: Callable[[int], None] | None = None
) -> Evaluation:
    """COCO metrics of ``model`` on ``split`` through the engine, with the COCO documents."""
    if not split.records:
        raise EvalError(f"the dataset has no images in its {split.name!r} split")
    return evaluate_predictions(split, predict_records(model, split, batch, advance))
