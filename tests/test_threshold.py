"""``best_confidence``: the confidence threshold of best F1, stored in model.json at export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speedmap.data import DatasetSplit, ImageRecord
from speedmap.detections import Detections
from speedmap.eval.cocoeval import EvalError
from speedmap.eval.threshold import FALLBACK, BestThreshold, best_confidence, match_image
from speedmap.modelstore import ModelMeta, read_meta

A, B, C = [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]
ELSEWHERE = [60, 60, 70, 70]  # overlaps no ground-truth box
CLASSES = ["cat", "dog"]


def rec(boxes: list[list[float]], classes: list[int], crowd: list[bool] | None = None) -> ImageRecord:
    return ImageRecord(
        Path("x.jpg"),
        100,
        100,
        np.array(boxes, dtype=np.float64).reshape(-1, 4),
        classes,
        np.array(crowd if crowd is not None else [False] * len(classes), dtype=bool),
    )


def det(boxes: list[list[float]], conf: list[float], classes: list[int], names: tuple[str, ...] = ()) -> Detections:
    return Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), conf, classes, names)


def split(*records: ImageRecord) -> DatasetSplit:
    return DatasetSplit("test", list(CLASSES), list(records))


def test_hand_computed_best_threshold_over_two_images() -> None:
    # 3 GTs (A, B in image 1; C in image 2); detections 0.9 TP, 0.8 FP, 0.7 TP, 0.3 TP, 0.2 FP.
    # F1 = 2 TP / (kept + GT):
    #   t=0.9: kept 1, TP 1 -> 2/4 = 0.500
    #   t=0.8: kept 2, TP 1 -> 2/5 = 0.400
    #   t=0.7: kept 3, TP 2 -> 4/6 = 0.667
    #   t=0.3: kept 4, TP 3 -> 6/7 = 0.857  <- best: precision 3/4, recall 3/3
    #   t=0.2: kept 5, TP 3 -> 6/8 = 0.750
    gt = split(rec([A, B], [0, 0]), rec([C], [0]))
    preds = [det([A, ELSEWHERE, B], [0.9, 0.8, 0.7], [0, 0, 0]), det([C, ELSEWHERE], [0.3, 0.2], [0, 0])]
    best = best_confidence(preds, gt)
    assert best.confidence == pytest.approx(0.3)
    assert best.f1 == pytest.approx(6 / 7) and best.precision == pytest.approx(3 / 4) and best.recall == 1.0
    # the per-image matching itself: the true positives in the order given
    tp, counted = match_image(
        gt.records[0].boxes,
        gt.records[0].class_ids,
        gt.records[0].iscrowd,
        preds[0].xyxy.astype(np.float64),
        preds[0].confidence,
        preds[0].class_id,
    )
    assert tp.tolist() == [True, False, True] and counted.all()


def test_a_class_mismatch_is_not_a_match() -> None:
    # GT A cat, B dog; 0.9 "dog" on A is a false positive, 0.6 dog on B a true positive.
    #   t=0.9: kept 1, TP 0 -> 0;  t=0.6: kept 2, TP 1 -> 2/4 = 0.5  <- best
    # (class-agnostic matching would make 0.9 a TP and choose it with F1 2/3)
    best = best_confidence([det([A, B], [0.9, 0.6], [1, 1])], split(rec([A, B], [0, 1])))
    assert best == BestThreshold(pytest.approx(0.6), 0.5, 0.5, 0.5)


def test_a_duplicate_detection_of_one_box_is_a_false_positive() -> None:
    # GTs A, B; 0.9 on A (TP), 0.8 on A again (FP: A is taken), 0.5 on B (TP).
    #   t=0.9: 2/3 = 0.667;  t=0.8: 2/4 = 0.5;  t=0.5: 4/5 = 0.8  <- best, precision 2/3, recall 1
    # (counting the duplicate as a match would give F1 1 at 0.8)
    a_dup = [0.5, 0, 10.5, 10]  # IoU with A about 0.95
    best = best_confidence([det([A, a_dup, B], [0.9, 0.8, 0.5], [0, 0, 0])], split(rec([A, B], [0, 0])))
    assert best.confidence == pytest.approx(0.5) and best.f1 == pytest.approx(0.8)
    assert best.precision == pytest.approx(2 / 3) and best.recall == 1.0


def test_highest_confidence_matches_first_and_iou_threshold_holds() -> None:
    # 0.9 overlaps A at IoU 0.6, 0.8 overlaps it exactly: COCO gives A to 0.9 (confidence first), so
    # 0.8 is the false positive; a box at IoU < 0.5 never matches.
    near = [0, 0, 10, 6]  # IoU 0.6 with A
    far = [0, 0, 10, 4]  # IoU 0.4
    r = rec([A], [0])
    tp, _ = match_image(
        r.boxes, r.class_ids, r.iscrowd, np.array([A, near], dtype=np.float64), np.array([0.8, 0.9]), np.array([0, 0])
    )
    assert tp.tolist() == [False, True]
    tp, _ = match_image(
        r.boxes, r.class_ids, r.iscrowd, np.array([far], dtype=np.float64), np.array([0.9]), np.array([0])
    )
    assert tp.tolist() == [False]
    assert best_confidence([det([far], [0.9], [0])], split(r)) == FALLBACK


def test_crowd_regions_are_neither_truth_nor_false_positives() -> None:
    # GT A, crowd region C (class cat); 0.9 inside C is ignored, 0.8 on A a TP: at 0.8, kept 1 (the
    # ignored one does not count), TP 1, GT 1 -> F1 1. Counting it as a FP would give 2/3 at 0.8.
    best = best_confidence([det([C, A], [0.9, 0.8], [0, 0])], split(rec([A, C], [0, 0], [False, True])))
    assert best == BestThreshold(pytest.approx(0.8), 1.0, 1.0, 1.0)
    # a dog inside a cat crowd region is an ordinary false positive
    best = best_confidence([det([C, A], [0.9, 0.8], [1, 0])], split(rec([A, C], [0, 0], [False, True])))
    assert best.f1 == pytest.approx(2 / 3)


def test_empty_cases_give_the_fallback() -> None:
    assert BestThreshold(0.4, 0.0, 0.0, 0.0) == FALLBACK
    assert best_confidence([], split()) == FALLBACK
    assert best_confidence([det([], [], [])], split(rec([A], [0]))) == FALLBACK  # no predictions
    assert best_confidence([det([A], [0.9], [0])], split(rec([], []))) == FALLBACK  # no ground truth
    assert best_confidence([det([A], [0.9], [0])], split(rec([A], [0], [True]))) == FALLBACK  # crowd only
    assert best_confidence([det([B], [0.9], [0])], split(rec([A], [0]))) == FALLBACK  # no true positive
    with pytest.raises(EvalError, match="one per image"):
        best_confidence([det([A], [0.9], [0])], split())


def test_thresholds_stay_within_001_and_099_and_ties_take_the_highest() -> None:
    best = best_confidence([det([A], [0.995], [0])], split(rec([A], [0])))
    assert best == BestThreshold(0.99, 1.0, 1.0, 1.0)
    # the only true positive under 0.01: nothing to stand on
    assert best_confidence([det([A, B], [0.5, 0.005], [0, 0])], split(rec([B], [0]))) == FALLBACK
    # 0.5 and 0.01 (where 0.005 lands) keep the same detections: equal F1, the higher threshold wins
    best = best_confidence([det([A, B], [0.5, 0.005], [0, 0])], split(rec([A, B], [0, 0])))
    assert best.confidence == pytest.approx(0.5) and best.f1 == pytest.approx(2 / 3)


def test_model_class_names_are_mapped_to_the_dataset() -> None:
    # the model numbers dog 0 and cat 1, the dataset cat 0 and dog 1; a class the dataset lacks drops
    preds = [det([A, B], [0.9, 0.8], [0, 2], names=("dog", "cat", "bird"))]
    best = best_confidence(preds, split(rec([A], [1])))
    assert best == BestThreshold(pytest.approx(0.9), 1.0, 1.0, 1.0)


def test_meta_reads_best_confidence_defensively() -> None:
    def meta(metrics: object) -> ModelMeta:
        return ModelMeta(Path("m"), {"classes": ["a"], "input": {"imgsz": 64}, "metrics": metrics})

    assert meta({"best_confidence": {"confidence": 0.37}}).best_confidence == 0.37
    for bad in (
        None,
        {},
        {"map": 0.5},
        {"best_confidence": None},
        {"best_confidence": {"confidence": "0.3"}},
        {"best_confidence": {"confidence": True}},
        {"best_confidence": {"confidence": float("nan")}},
        {"best_confidence": {"confidence": 1.5}},
        {"best_confidence": [0.3]},
        [1],
    ):
        assert meta(bad).best_confidence is None, bad
    assert ModelMeta(Path("m"), {"classes": ["a"]}).best_confidence is None


def test_export_stores_the_best_confidence(model_store: Path, tiny_run: Path) -> None:
    from speedmap.data import load_dataset
    from speedmap.engine import Model
    from speedmap.eval.model import predict_records

    folder = model_store / "shapes" / "1"
    doc = json.loads((folder / "model.json").read_text())
    stored = doc["metrics"]["best_confidence"]
    assert set(stored) == {"confidence", "f1", "precision", "recall", "split", "iou"}
    assert 0.01 <= stored["confidence"] <= 0.99 and 0 <= stored["f1"] <= 1
    assert stored["split"] == doc["metrics"]["split"] and stored["iou"] == 0.5
    assert stored["f1"] > 0  # the tiny model finds shapes (mAP50 about 0.4), so this is measured, not the fallback
    meta = read_meta(folder)
    assert meta.best_confidence == stored["confidence"]
    # the same number again from the engine's predictions on that split
    data = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
    view = load_dataset(data).split(stored["split"])
    again = best_confidence(predict_records(Model(meta), view), view)
    assert again.confidence == pytest.approx(stored["confidence"]) and again.f1 == pytest.approx(stored["f1"])
