"""Paired bootstrap of COCO mAP: every replicate equals pycocotools on the materialised resample."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from speedmap.data import DatasetSplit, ImageRecord
from speedmap.detections import Detections
from speedmap.eval import EvalError
from speedmap.eval.bootstrap import Interval, PairedBootstrap, paired_bootstrap, replicate_metrics
from speedmap.eval.cocoeval import evaluate_predictions

CATS = (3, 17, 42)


def make_case(seed: int, n_img: int = 15, quality: float = 1.0) -> tuple[dict, list[dict]]:
    """GT and noisy detections with continuous scores: false positives, an image without ground truth,
    class 42 absent from most images, a class (99) with detections but no ground truth, a crowd box
    with several detections and a regular box inside, a ground-truth box ignored for its area, a detection of negative
    area, and more than 100 detections of one class on one image, true positives among the cut ones."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i * 5 + 2), "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_img)]
    categories = [{"id": c, "name": f"class{c}"} for c in (*CATS, 99)]
    anns, dets = [], []

    def box() -> list[float]:
        w, h = rng.uniform(5, 200, 2)
        return [float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h)), float(w), float(h)]

    def score(low: float = 0.2) -> float:
        return float(rng.uniform(low, 1.0) ** (1 / quality))

    for k, im in enumerate(images):
        n_gt = 0 if k == 1 else int(rng.integers(1, 9))
        for j in range(n_gt):
            c = int(rng.choice(CATS if k % 4 == 0 else CATS[:2]))
            b = box()
            area = b[2] * b[3] * float(rng.uniform(0.5, 1.0))  # a segmentation area, as COCO's
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": b,
                    "area": area,
                    "iscrowd": int(k == 3 and j == 0),
                }
            )
            for _ in range(int(rng.integers(0, 3))):  # 0-2 detections per object, one may be a duplicate
                e = rng.normal(0, 8 / quality, 4)
                dets.append(
                    {
                        "image_id": im["id"],
                        "category_id": c if rng.random() < 0.9 else int(rng.choice(CATS)),
                        "bbox": [b[0] + e[0], b[1] + e[1], max(1.0, b[2] + e[2]), max(1.0, b[3] + e[3])],
                        "score": score(),
                    }
                )
            if k == 3 and j == 0:  # detections inside the crowd region: each one ignored, none a false positive
                for _ in range(4):
                    w, h = b[2] * rng.uniform(0.2, 0.5), b[3] * rng.uniform(0.2, 0.5)
                    xy = [b[0] + rng.uniform(0, b[2] - w), b[1] + rng.uniform(0, b[3] - h)]
                    dets.append({"image_id": im["id"], "category_id": c, "bbox": [*xy, w, h], "score": score(0.5)})
                inner = [b[0] + b[2] / 4, b[1] + b[3] / 4, b[2] / 2, b[3] / 2]  # a regular box in the crowd wins
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": im["id"],
                        "category_id": c,
                        "bbox": inner,
                        "area": inner[2] * inner[3],
                        "iscrowd": 0,
                    }
                )
                dets.append({"image_id": im["id"], "category_id": c, "bbox": [v + 0.5 for v in inner], "score": 0.9})
        many = k == 5  # 110 detections of class 3 on top of the true ones: COCO keeps the best 100
        for _ in range(110 if many else int(rng.integers(0, 6))):
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": CATS[0] if many else int(rng.choice(CATS)),
                    "bbox": box(),
                    "score": score(0.3) if many else float(rng.uniform(0, 0.8)),
                }
            )
    b = box()  # ignored for its area (outside COCO's "all" range), with a perfect detection
    anns.append(
        {
            "id": len(anns) + 1,
            "image_id": images[2]["id"],
            "category_id": CATS[1],
            "bbox": b,
            "area": 2e10,
            "iscrowd": 0,
        }
    )
    dets.append({"image_id": images[2]["id"], "category_id": CATS[1], "bbox": b, "score": 0.97})
    dets.append({"image_id": images[0]["id"], "category_id": CATS[1], "bbox": [10.0, 10.0, -5.0, 20.0], "score": 0.99})
    dets.append({"image_id": images[0]["id"], "category_id": 99, "bbox": box(), "score": 0.5})
    assert any(a["iscrowd"] for a in anns)
    return {"images": images, "annotations": anns, "categories": categories}, dets


def pycoco_stats(gt: dict, dets: list[dict]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def materialise(gt: dict, dets: list[dict], image_ids: list[int]) -> tuple[dict, list[dict]]:
    """The resampled set: the k-th drawn image becomes image k+1000, with copies of its boxes."""
    images, anns, out = [], [], []
    by_id = {im["id"]: im for im in gt["images"]}
    for k, i in enumerate(image_ids):
        new = k + 1000
        images.append({**by_id[i], "id": new})
        for a in gt["annotations"]:
            if a["image_id"] == i:
                anns.append({**a, "id": len(anns) + 1, "image_id": new})
        out += [{**d, "image_id": new} for d in dets if d["image_id"] == i]
    return {"images": images, "annotations": anns, "categories": gt["categories"]}, out


@pytest.mark.parametrize("seed", range(2))
def test_replicates_equal_pycocotools_on_the_materialised_resample(seed: int) -> None:
    gt, dets = make_case(seed)
    ids = [im["id"] for im in gt["images"]]
    rng = np.random.default_rng(100 + seed)
    draws = [ids, *([int(x) for x in rng.choice(ids, len(ids))] for _ in range(5))]
    for draw in draws:
        ref = pycoco_stats(*materialise(gt, dets, draw))
        got = replicate_metrics(gt, dets, draw)
        assert got == pytest.approx((ref[0], ref[1]), abs=1e-9, rel=0), draw
    assert len({replicate_metrics(gt, dets, d) for d in draws}) == len(draws)  # the resamples do differ


def test_full_set_equals_evaluate_predictions() -> None:
    rng = np.random.default_rng(7)
    records, preds = [], []
    for i in range(12):
        n = int(rng.integers(0, 7))
        wh = rng.uniform(8, 150, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh)
        boxes = np.column_stack([xy, xy + wh])
        cls = rng.integers(0, 3, n)
        records.append(ImageRecord(Path(f"{i}.jpg"), 640, 480, boxes, cls, rng.random(n) < 0.1))
        m = int(rng.integers(0, 12))
        near = boxes[rng.integers(0, n, m)] + rng.normal(0, 5, (m, 4)) if n else rng.uniform(0, 400, (m, 4))
        near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
        preds.append(Detections(near, rng.random(m), rng.integers(0, 3, m)))
    fe = evaluate_predictions(DatasetSplit("test", ["a", "b", "c"], records), preds)
    all_ids = [im["id"] for im in fe.gt["images"]]
    got = replicate_metrics(fe.gt, fe.predictions, all_ids)
    assert got == pytest.approx((fe.metrics.map, fe.metrics.map50), abs=1e-9, rel=0)
    assert 0.05 < got[0] < 0.95


def test_paired_bootstrap_properties() -> None:
    gt, a = make_case(3, n_img=30)
    _, b = make_case(3, n_img=30, quality=3.0)  # same ground truth, tighter boxes and better scores
    r1 = paired_bootstrap(gt, a, b, resamples=200, seed=5)
    r2 = paired_bootstrap(gt, a, b, resamples=200, seed=5)
    assert r1 == r2 and json.loads(json.dumps(r1.to_json())) == r1.to_json()
    assert r1 != paired_bootstrap(gt, a, b, resamples=200, seed=6)
    assert (r1.images, r1.resamples, r1.seed, r1.level) == (30, 200, 5, 0.95)
    assert r1.point["a_map"] == pytest.approx(replicate_metrics(gt, a, [im["id"] for im in gt["images"]])[0])
    for key in ("a_map", "a_map50", "b_map", "b_map50", "delta_map", "delta_map50"):
        iv = getattr(r1, key)
        assert iv.low <= r1.point[key] <= iv.high and iv.low < iv.high, key
    assert r1.delta_map.excludes_zero() and r1.delta_map.low > 0
    assert r1.images_needed() == 30 and r1.images_needed("map50") == 30

    same = paired_bootstrap(gt, a, copy.deepcopy(a), resamples=100, seed=1)
    assert same.delta_map == Interval(0.0, 0.0) == same.delta_map50 and not same.delta_map.excludes_zero()
    assert same.a_map == same.b_map and same.a_map.low < same.a_map.high
    assert same.images_needed() is None and same.to_json()["images_needed"] == {"map": None, "map50": None}


def test_images_needed_and_interval() -> None:
    iv = Interval(-0.01, 0.03)
    assert not iv.excludes_zero() and Interval(0.001, 0.2).excludes_zero() and Interval(-0.2, -0.1).excludes_zero()
    assert iv.to_json() == [-0.01, 0.03]
    point = {"a_map": 0.5, "a_map50": 0.7, "b_map": 0.51, "b_map50": 0.7, "delta_map": 0.01, "delta_map50": 0.0}
    r = PairedBootstrap(100, 1000, 0, 0.95, iv, iv, iv, iv, delta_map=iv, delta_map50=iv, point=point)
    assert r.images_needed("map") == 400  # half-width 0.02 is twice the delta: four times the images
    assert r.images_needed("map50") is None
    r.point["delta_map"] = -0.03  # an asymmetric interval holding zero still asks for more images
    assert r.images_needed() == 101
    with pytest.raises(ValueError, match="map50"):
        r.images_needed("map75")


def test_unknown_images_are_errors() -> None:
    gt, dets = make_case(0)
    with pytest.raises(EvalError, match="123456"):
        replicate_metrics(gt, dets, [123456])
    with pytest.raises(EvalError, match="not in the ground truth"):
        paired_bootstrap(gt, dets, [*dets, {"image_id": 9999, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.3}])
