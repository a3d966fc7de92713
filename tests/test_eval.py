"""COCO evaluation equals pycocotools to 1e-9, including COCO's edge cases; plots and CLI."""

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
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data import load_dataset
from speedmap.detections import Detections
from speedmap.eval import SUMMARY_KEYS, EvalError, evaluate_files, evaluate_predictions
from speedmap.eval.confusion import confusion_matrix
from tests.conftest import write_image


def make_case(
    seed: int,
    cats: tuple[int, ...] = (3, 17, 42),
    roboflow: bool = True,
    crowd: float = 0.1,
    ties: bool = False,
    many: bool = False,
    n_img: int = 40,
) -> tuple[dict, list[dict]]:
    """GT + results with the edge cases: unused category 0, crowd, sparse ids, images without GT or
    predictions, >100 predictions on an image, tied scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i * 7 + 3), "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(n_img)]
    categories = [{"id": 0, "name": "project", "supercategory": "none"}] if roboflow else []
    categories += [{"id": c, "name": f"class{c}", "supercategory": "project" if roboflow else "x"} for c in cats]
    anns, dets = [], []

    def score() -> float:
        return float(np.round(rng.random(), 1) if ties else rng.random())

    def box() -> list[float]:
        w, h = rng.uniform(3, 250, 2)
        return [float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h)), float(w), float(h)]

    for im in images:
        n_gt = 0 if rng.random() < 0.15 else int(rng.integers(1, 10))
        for _ in range(n_gt):
            b = box()
            c = int(rng.choice(cats))
            area = b[2] * b[3] * float(rng.uniform(0.4, 1.0))  # a segmentation area, as COCO's
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": c,
                    "bbox": b,
                    "area": area,
                    "iscrowd": int(rng.random() < crowd),
                }
            )
            if rng.random() < 0.8:
                j = rng.normal(0, 6, 4)
                dets.append(
                    {
                        "image_id": im["id"],
                        "category_id": c if rng.random() < 0.85 else int(rng.choice(cats)),
                        "bbox": [b[0] + j[0], b[1] + j[1], max(1.0, b[2] + j[2]), max(1.0, b[3] + j[3])],
                        "score": score(),
                    }
                )
        if rng.random() < 0.1:
            continue  # an image without extra predictions
        n_fp = int(rng.integers(100, 140)) if many and rng.random() < 0.3 else int(rng.integers(0, 5))
        for _ in range(n_fp):
            dets.append({"image_id": im["id"], "category_id": int(rng.choice(cats)), "bbox": box(), "score": score()})
    return {"images": images, "annotations": anns, "categories": categories}, dets


def pycoco(gt: dict, dets: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def write_case(tmp: Path, gt: dict, dets: list) -> tuple[Path, Path]:
    (tmp / "gt.json").write_text(json.dumps(gt))
    (tmp / "pred.json").write_text(json.dumps(dets))
    return tmp / "gt.json", tmp / "pred.json"


CASES = [
    {},
    {"ties": True},
    {"many": True},
    {"ties": True, "many": True, "crowd": 0.3},
    {"roboflow": False, "cats": (1, 2, 3, 4, 5, 6, 7, 8)},
    {"cats": (5,), "n_img": 10},
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(c) or "plain")
def test_summary_and_per_class_equal_pycocotools(tmp_path: Path, seed: int, case: dict) -> None:
    gt, dets = make_case(seed, **case)
    ref = pycoco(gt, dets)
    result = evaluate_files(*write_case(tmp_path, gt, dets))
    m = result.metrics
    np.testing.assert_allclose(m.stats, ref.stats, atol=1e-9, rtol=0)
    assert m.classes == [f"class{c}" for c in case.get("cats", (3, 17, 42))]  # project category left out
    cat_ids = list(ref.params.catIds)
    for name, cid in zip(m.classes, result.category_ids, strict=True):
        p = ref.eval["precision"][:, :, cat_ids.index(cid), 0, -1]
        expected = p[p > -1].mean() if (p > -1).any() else -1
        assert m.per_class[name]["map"] == pytest.approx(expected, abs=1e-9)
        p50 = ref.eval["precision"][0, :, cat_ids.index(cid), 0, -1]
        assert m.per_class[name]["map50"] == pytest.approx(p50[p50 > -1].mean() if (p50 > -1).any() else -1, abs=1e-9)


def test_class_without_ground_truth_is_minus_one_and_said(tmp_path: Path) -> None:
    gt, dets = make_case(1, cats=(3, 17), roboflow=False)
    gt["categories"].append({"id": 99, "name": "ghost", "supercategory": "x"})
    dets.append({"image_id": gt["images"][0]["id"], "category_id": 99, "bbox": [1, 1, 5, 5], "score": 0.9})
    m = evaluate_files(*write_case(tmp_path, gt, dets)).metrics
    np.testing.assert_allclose(m.stats, pycoco(gt, dets).stats, atol=1e-9, rtol=0)
    assert m.per_class["ghost"] == {"map": -1.0, "map50": -1.0}
    assert m.classes_without_gt == ["ghost"] and any("no ground truth for ghost" in n for n in m.notes)
    result = CliRunner().invoke(app, ["eval", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")])
    assert result.exit_code == 0 and "no ground truth for ghost" in result.stdout and "n/a (-1)" in result.stdout


def test_empty_predictions_give_zeros_and_a_note(tmp_path: Path) -> None:
    gt, _ = make_case(2, roboflow=False)
    with pytest.raises(Exception):  # noqa: B017 - pycocotools itself cannot evaluate an empty list
        pycoco(gt, [])
    m = evaluate_files(*write_case(tmp_path, gt, [])).metrics
    defined = m.stats[m.stats > -1]
    assert len(defined) >= 9 and (defined == 0).all()
    assert all(v["map"] == 0 for v in m.per_class.values())
    assert any("no predictions" in n for n in m.notes)


def test_unknown_ids_are_named(tmp_path: Path) -> None:
    gt, dets = make_case(0)
    bad = [*dets, {"image_id": 123456, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 0.5}]
    with pytest.raises(EvalError, match=r"image id.*123456"):
        evaluate_files(*write_case(tmp_path, gt, bad))
    bad = [*dets, {"image_id": gt["images"][0]["id"], "category_id": 777, "bbox": [1, 1, 2, 2], "score": 0.5}]
    with pytest.raises(EvalError, match=r"category id.*777"):
        evaluate_files(*write_case(tmp_path, gt, bad))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ('[{"image_id": 3, "cat', "truncated"),
        ('{"annotations": []}', "annotation file"),
        ('[{"image_id": 3}]', "needs image_id, category_id, bbox and score"),
        ('[{"image_id": 3, "category_id": 3, "bbox": [1, 2], "score": 1}]', "4 numbers"),
    ],
)
def test_bad_prediction_files_are_clear_cli_errors(tmp_path: Path, text: str, needle: str) -> None:
    gt, _ = make_case(0)
    gt_path, pred_path = write_case(tmp_path, gt, [])
    pred_path.write_text(text)
    result = CliRunner().invoke(app, ["eval", "--gt", str(gt_path), "--pred", str(pred_path)])
    assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.output


def test_cli_json_schema_and_plots(tmp_path: Path) -> None:
    gt, dets = make_case(4, crowd=0.2)
    gt_path, pred_path = write_case(tmp_path, gt, dets)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--gt",
            str(gt_path),
            "--pred",
            str(pred_path),
            "--json",
            "--plots",
            str(tmp_path / "plots"),
            "--conf",
            "0.3",
            "--iou",
            "0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == [*SUMMARY_KEYS, "per_class"]
    assert set(doc["per_class"]) == {"class3", "class17", "class42"}
    assert all(set(v) == {"map", "map50"} for v in doc["per_class"].values())
    np.testing.assert_allclose([doc[k] for k in SUMMARY_KEYS], pycoco(gt, dets).stats, atol=1e-9, rtol=0)
    for name in ("pr_curves.png", "confusion_matrix.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cm = json.loads((tmp_path / "plots" / "confusion_matrix.json").read_text())
    assert cm["conf"] == 0.3 and cm["iou"] == 0.6 and cm["classes"][-1] == "background"
    n_gt = sum(1 for a in gt["annotations"] if not a["iscrowd"])
    assert sum(map(sum, cm["matrix"][:-1])) == n_gt  # every non-crowd GT box is counted once
    table = CliRunner().invoke(app, ["eval", "--gt", str(gt_path), "--pred", str(pred_path)])
    assert "AP @[IoU=0.50:0.95 | area=all | maxDets=100]" in table.stdout and "class17" in table.stdout


def test_evaluate_on_a_dataset_split_equals_pycocotools(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    imgs = [write_image(root / "test" / f"{i}.jpg", 64, 48) for i in range(6)]
    gt, dets = make_case(5, cats=(1, 2), roboflow=False, n_img=6)
    for im, path in zip(gt["images"], imgs, strict=True):
        im.update(file_name=path.name, width=64, height=48)
    for a in gt["annotations"]:  # keep boxes inside the 64x48 images, area = box area
        x, y, w, h = a["bbox"]
        a["bbox"] = [x / 10, y / 10, w / 10, h / 10]
        a["area"] = a["bbox"][2] * a["bbox"][3]
    for d in dets:
        d["bbox"] = [v / 10 for v in d["bbox"]]
    (root / "test" / "_annotations.coco.json").write_text(json.dumps(gt))
    split = load_dataset(root, strict=True).split("test")
    by_image: dict[int, list[dict]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
    preds = []
    for im in gt["images"]:
        ds = by_image.get(im["id"], [])
        xywh = np.array([d["bbox"] for d in ds]).reshape(-1, 4)
        preds.append(
            Detections(
                np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]),
                [d["score"] for d in ds],
                [d["category_id"] - 1 for d in ds],
            )
        )
    m = evaluate_predictions(split, preds).metrics
    np.testing.assert_allclose(m.stats, pycoco(gt, dets).stats, atol=1e-5, rtol=0)  # float32 boxes
    with pytest.raises(EvalError, match="one per image"):
        evaluate_predictions(split, preds[:-1])


def test_confusion_matrix_counts() -> None:
    gt_box = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 90, 90]], dtype=float)
    gt_cls = np.array([0, 1, 1, 0])
    crowd = np.array([False, False, False, True])
    dt_box = np.array([[0, 0, 10, 10], [20, 20, 30, 31], [100, 100, 110, 110], [65, 65, 70, 70], [0, 0, 10, 11]], float)
    score = np.array([0.9, 0.8, 0.7, 0.9, 0.1])
    dt_cls = np.array([0, 0, 1, 1, 1])
    cm = confusion_matrix([((gt_box, gt_cls, crowd), (dt_box, score, dt_cls))], ["a", "b"], conf=0.25, iou=0.5)
    # a->a matched; b predicted as a; b missed; FP of b in empty space; det inside the crowd ignored;
    # the 0.1-confidence det is below the threshold.
    assert cm.matrix.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]


def test_annotation_id_zero_counts_as_matched(tmp_path: Path) -> None:
    """Roboflow exports start annotation ids at 0, which COCOeval reads as 'unmatched' (pycocotools
    scores the perfect detection below as a false positive); speedmap renumbers the ids."""
    gt = {
        "images": [{"id": 0, "width": 100, "height": 100, "file_name": "a.jpg"}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(
        json.dumps([{"image_id": 0, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}])
    )
    m = evaluate_files(tmp_path / "gt.json", tmp_path / "pred.json").metrics
    assert m.map == pytest.approx(1.0) and m.map50 == pytest.approx(1.0)
