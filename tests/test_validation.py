"""Every validation problem is detected, located (file and line) and handled as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speedmap.data import load_dataset
from speedmap.data.problems import Action
from speedmap.data.verify import decode_all
from speedmap.errors import DatasetError
from tests.conftest import write_image
from tests.test_layouts import voc_xml

LABELS = {
    "ok": "0 0.5 0.5 0.2 0.2\n",
    "fields": "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n",
    "nonnum": "0 0.5 abc 0.2 0.2\n",
    "range": "0 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n",
    "zero": "0 0.5 0.5 0.0 0.2\n1 0.2 0.2 0.1 0.1\n",
    "inverted": "0 0.5 0.5 -0.2 0.2\n",
    "outside": "0 0.95 0.5 0.2 0.2\n1 1.5 0.5 0.2 0.2\n",
    "dup": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n",
    "float_noise": "0 0.5 0.5 1.0000001 0.2\n",
}


@pytest.fixture
def broken_yolo(tmp_path: Path) -> Path:
    root = tmp_path / "y"
    (root / "train" / "labels").mkdir(parents=True)
    for stem, text in LABELS.items():
        write_image(root / "train" / "images" / f"{stem}.jpg", 100, 100)
        (root / "train" / "labels" / f"{stem}.txt").write_text(text)
    write_image(root / "train" / "images" / "negative.jpg", 100, 100)
    (root / "train" / "images" / "corrupt.jpg").write_bytes(b"\x00garbage" * 10)
    (root / "data.yaml").write_text("train: train/images\nval: valid/images\nnames: [a, b]\n")
    return root


def by_kind(ds, kind):
    return [p for p in ds.problems.items if p.kind == kind]


def test_yolo_problems_are_located_and_only_broken_items_skipped(broken_yolo: Path) -> None:
    ds = load_dataset(broken_yolo)
    labels = broken_yolo / "train" / "labels"
    [p] = by_kind(ds, "bad_fields")
    assert (p.file, p.line, p.action) == (str(labels / "fields.txt"), 2, Action.SKIPPED_IMAGE)
    [p] = by_kind(ds, "non_numeric")
    assert (p.file, p.line) == (str(labels / "nonnum.txt"), 1) and "'abc'" in p.message
    [p] = by_kind(ds, "class_out_of_range")
    assert (p.file, p.line) == (str(labels / "range.txt"), 3) and "0..1" in p.message
    [p] = by_kind(ds, "zero_area_box")
    assert (p.file, p.line, p.action) == (str(labels / "zero.txt"), 1, Action.SKIPPED_BOX)
    [p] = by_kind(ds, "inverted_box")
    assert p.file == str(labels / "inverted.txt")
    outside = by_kind(ds, "box_outside")
    assert [(q.line, q.action) for q in outside] == [(1, Action.CLIPPED_BOX), (2, Action.SKIPPED_BOX)]
    [p] = by_kind(ds, "duplicate_box")
    assert (p.file, p.line) == (str(labels / "dup.txt"), 2)
    [p] = by_kind(ds, "corrupt_image")
    assert "corrupt.jpg" in p.file
    [p] = by_kind(ds, "missing_split")
    assert "valid/images" in p.message

    kept = {r.path.stem: r for r in ds.split_records("train")}
    assert set(kept) == {"ok", "zero", "inverted", "outside", "dup", "float_noise", "negative"}
    assert kept["negative"].num_boxes == 0  # images without labels are valid negatives
    assert kept["zero"].class_ids.tolist() == [1]
    np.testing.assert_allclose(kept["outside"].boxes, [[85, 40, 100, 60]])
    assert kept["dup"].class_ids.tolist() == [0, 1]
    assert kept["float_noise"].boxes[0, 2] == 100  # float noise clipped silently
    assert len(ds.problems) == 10


def test_strict_makes_any_problem_fatal_and_lists_them(broken_yolo: Path) -> None:
    with pytest.raises(DatasetError) as exc:
        load_dataset(broken_yolo, strict=True)
    text = str(exc.value)
    assert "10 problem(s)" in text and "fields.txt:2" in text and "strict" in text


def coco_doc(anns: list[dict], images: int = 2) -> dict:
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 50} for i in range(images)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def test_coco_problems(tmp_path: Path) -> None:
    root = tmp_path / "c"
    for i in (0, 1, 2, 4):
        write_image(root / "train" / f"{i}.jpg", 50, 50)
    anns = [
        {"id": 10, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 11, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown category: image 1 skipped
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 13, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},  # unknown image
        {"id": 14, "image_id": 2, "category_id": 2, "bbox": [1, "x", 5, 5]},  # non-numeric
        {"id": 15, "image_id": 4, "category_id": 2, "bbox": [40, 40, 20, -3]},  # inverted: box dropped
        {"id": 17, "image_id": 4, "category_id": 2, "bbox": [2, 3, 4, 5]},
        {"id": 16, "image_id": 0, "category_id": 2, "bbox": [1, 1, 5]},  # wrong field count: image 0 skipped
    ]
    doc = coco_doc(anns, images=5)  # image 3 is listed but its file is missing
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(doc))
    ds = load_dataset(root)
    kinds = sorted(p.kind for p in ds.problems.items)
    assert kinds == ["bad_fields", "inverted_box", "missing_image", "non_numeric", "unknown_category", "unknown_image"]
    [p] = by_kind(ds, "unknown_category")
    assert "id 11" in p.message and "category_id 9" in p.message
    [rec] = ds.split_records("train")  # images 0-3 had a broken annotation or no file
    assert rec.path.name == "4.jpg" and rec.boxes.tolist() == [[2, 3, 6, 8]] and rec.class_ids.tolist() == [1]


@pytest.mark.parametrize(
    ("text", "needle"),
    [("", "empty"), ('{"images": [{"id": 1, "file_na', "truncated JSON"), ("{'bad': 1}", "malformed JSON")],
)
def test_broken_json_is_reported_with_line(tmp_path: Path, text: str, needle: str) -> None:
    root = tmp_path / "j"
    (root / "train").mkdir(parents=True)
    (root / "train" / "_annotations.coco.json").write_text(text)
    write_image(root / "valid" / "0.jpg", 50, 50)
    (root / "valid" / "_annotations.coco.json").write_text(json.dumps(coco_doc([], images=1)))
    ds = load_dataset(root)  # the good split survives
    [p] = ds.problems.items
    assert p.kind == "bad_annotation_file" and needle in p.message and p.action == Action.SKIPPED_SPLIT
    assert len(ds.split_records("valid")) == 1
    (root / "valid" / "_annotations.coco.json").write_text(text)
    with pytest.raises(DatasetError, match=needle):
        load_dataset(root)


@pytest.mark.parametrize(
    ("text", "needle"), [("", "empty"), ("names: [a, b\ntrain: x\n", "malformed or truncated YAML")]
)
def test_broken_yaml_is_a_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DatasetError, match=needle):
        load_dataset(tmp_path / "data.yaml")


def test_voc_problems(tmp_path: Path) -> None:
    root = tmp_path / "v"
    for stem in ("good", "trunc", "inv", "nonnum"):
        write_image(root / "train" / f"{stem}.jpg", 50, 50)
    (root / "train" / "good.xml").write_text(voc_xml("good.jpg", 50, 50, [("a", [1, 1, 9, 9], 0)]))
    (root / "train" / "trunc.xml").write_text(voc_xml("trunc.jpg", 50, 50, [("a", [1, 1, 9, 9], 0)])[:60])
    (root / "train" / "inv.xml").write_text(
        voc_xml("inv.jpg", 50, 50, [("a", [9, 1, 1, 9], 0), ("a", [1, 1, 5, 5], 0)])
    )
    (root / "train" / "nonnum.xml").write_text(voc_xml("nonnum.jpg", 50, 50, [("a", ["x", 1, 5, 5], 0)]))
    (root / "train" / "orphan.xml").write_text(voc_xml("orphan.jpg", 50, 50, []))
    ds = load_dataset(root)
    kinds = sorted(p.kind for p in ds.problems.items)
    assert kinds == ["bad_annotation_file", "inverted_box", "missing_image", "non_numeric"]
    [p] = by_kind(ds, "bad_annotation_file")
    assert p.line == 1 and "trunc.xml" in p.file
    assert sorted(r.path.stem for r in ds.split_records("train")) == ["good", "inv"]


def test_decode_check_finds_truncated_image_data(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write_image(root / "train" / "images" / "ok.jpg", 200, 150)
    big = write_image(root / "train" / "images" / "cut.jpg", 200, 150)
    big.write_bytes(big.read_bytes()[:1500])
    (root / "data.yaml").write_text("train: train/images\nnames: [a]\n")
    ds = load_dataset(root)
    assert len(ds.split_records("train")) == 2  # headers are fine
    assert decode_all(ds) == 1
    assert [r.path.stem for r in ds.split_records("train")] == ["ok"]
    assert by_kind(ds, "corrupt_image")[0].file.endswith("cut.jpg")
