"""Real export layouts, written here as fixtures: Roboflow COCO/YOLO/VOC, standard COCO/VOC, Ultralytics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speedmap.data import detect_format, load_dataset
from speedmap.errors import DatasetError
from tests.conftest import write_image


def roboflow_coco(root: Path) -> Path:
    cats = [
        {"id": 0, "name": "animals-Xy12", "supercategory": "none"},
        {"id": 3, "name": "cat", "supercategory": "animals-Xy12"},
        {"id": 17, "name": "dog", "supercategory": "animals-Xy12"},
        {"id": 42, "name": "zebra", "supercategory": "animals-Xy12"},
    ]
    for split, n in (("train", 3), ("valid", 1), ("test", 1)):
        images, anns = [], []
        for i in range(n):
            name = f"{split}{i}_jpg.rf.abc{i}.jpg"
            write_image(root / split / name, 64, 48)
            images.append({"id": i, "license": 1, "file_name": name, "height": 48, "width": 64})
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "category_id": 3,
                    "bbox": [1, 2, 10, 20],
                    "area": 200,
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
            anns.append(
                {
                    "id": len(anns),
                    "image_id": i,
                    "category_id": 17,
                    "bbox": [30.5, 10, 5, 5],
                    "area": 25,
                    "segmentation": [],
                    "iscrowd": 0,
                }
            )
        images.append({"id": n, "file_name": f"{split}_neg.jpg", "height": 48, "width": 64})
        write_image(root / split / f"{split}_neg.jpg", 64, 48)
        doc = {"info": {"year": "2024"}, "licenses": [], "categories": cats, "images": images, "annotations": anns}
        (root / split / "_annotations.coco.json").write_text(json.dumps(doc))
    return root


def test_roboflow_coco_drops_unused_supercategory_and_maps_sparse_ids(tmp_path: Path) -> None:
    root = roboflow_coco(tmp_path / "rf")
    assert detect_format(root) == "coco"
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cat", "dog", "zebra"]  # id 0 gone; unused real class 'zebra' kept
    rec = ds.split_records("train")[0]
    np.testing.assert_allclose(rec.boxes, [[1, 2, 11, 22], [30.5, 10, 35.5, 15]])
    assert rec.class_ids.tolist() == [0, 1]
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == [4, 2, 2]
    assert sum(r.num_boxes == 0 for r in ds.split_records("train")) == 1  # negatives kept


def test_standard_coco_layout_and_single_file(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    write_image(root / "val2017" / "000001.jpg", 40, 30)
    doc = {
        "images": [{"id": 1, "file_name": "000001.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 1}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    ds = load_dataset(root, strict=True)
    assert list(ds.splits) == ["valid"] and ds.split_records("valid")[0].iscrowd.tolist() == [True]
    # an annotation file on its own, images in images/ beside it
    single = tmp_path / "single"
    write_image(single / "images" / "000001.jpg", 40, 30)
    (single / "labels.json").write_text(json.dumps(doc))
    ds = load_dataset(single / "labels.json", strict=True)
    assert ds.classes == ["person"] and ds.split_records("train")[0].width == 40


def test_roboflow_yolo_yaml_with_parent_relative_paths_and_dict_names(tmp_path: Path) -> None:
    root = tmp_path / "rfyolo"
    for split in ("train", "valid", "test"):
        write_image(root / split / "images" / f"{split}_a.jpg", 100, 50)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{split}_a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n")
        write_image(root / split / "images" / f"{split}_neg.png", 100, 50, "PNG")  # no label file: negative
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: {0: cat, 1: dog}\n"
        "roboflow:\n  workspace: w\n  project: p\n  version: 1\n"
    )
    assert detect_format(root) == "yolo"
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cat", "dog"]
    rec = next(r for r in ds.split_records("valid") if r.num_boxes)
    np.testing.assert_allclose(rec.boxes, [[40, 15, 60, 35], [5, 2.5, 15, 7.5]])
    assert rec.class_ids.tolist() == [1, 0]
    assert all(len(ds.split_records(s)) == 2 for s in ("train", "valid", "test"))


def test_ultralytics_yaml_with_path_key_and_list_names(tmp_path: Path) -> None:
    root = tmp_path / "u"
    write_image(root / "data" / "images" / "train" / "a.jpg", 20, 20)
    (root / "data" / "labels" / "train").mkdir(parents=True)
    (root / "data" / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "cfg").mkdir()
    (root / "cfg" / "mine.yaml").write_text("path: ../data\ntrain: images/train\nval: images/train\nnames: [thing]\n")
    ds = load_dataset(root / "cfg" / "mine.yaml", strict=True)
    assert ds.classes == ["thing"] and len(ds.split_records("train")) == 1 and len(ds.split_records("valid")) == 1
    np.testing.assert_allclose(ds.split_records("train")[0].boxes, [[5, 5, 15, 15]])


def test_yolo_yaml_written_on_another_machine_finds_its_splits_beside_it(tmp_path: Path) -> None:
    """A Roboflow YOLOv8 export whose data.yaml holds the exporter's absolute paths (a public medicine-package set
    has /Users/<name>/.../dataset/train): each split is found by its trailing folders beside the file, and said
    so; a Windows path and Colab's ``path: /content/...`` too; a path with no such folder still names what it
    looked for, and a lone ``images`` tail is never taken for a split."""
    root = tmp_path / "medicine"
    for split in ("train", "valid"):
        write_image(root / split / "images" / f"{split}_a.jpg", 40, 40)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{split}_a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text(
        "train: /Users/someone/Documents/proj/dataset/train\nval: C:\\Users\\me\\ds\\valid\\images\n"
        "test: /Users/someone/Documents/proj/dataset/test\nnc: 1\nnames: ['Medicine']\n"
    )
    ds = load_dataset(root)
    assert len(ds.split_records("train")) == 1 and len(ds.split_records("valid")) == 1
    assert not ds.split_records("test")
    moved = [p for p in ds.problems.items if p.kind == "moved_split"]
    assert [m.message.split(":")[0] for m in moved] == ["train", "valid"]
    assert "using train" in moved[0].message and str(Path("valid") / "images") in moved[1].message
    assert any(p.kind == "missing_split" and "test" in p.message for p in ds.problems.items)
    colab = tmp_path / "colab"
    write_image(colab / "images" / "train" / "a.jpg", 20, 20)
    (colab / "labels" / "train").mkdir(parents=True)
    (colab / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (colab / "data.yaml").write_text("path: /content/datasets/x\ntrain: images/train\nnames: [a]\n")
    assert len(load_dataset(colab).split_records("train")) == 1
    (colab / "data.yaml").write_text("train: /elsewhere/images\nnames: [a]\n")  # only a generic tail: no split
    with pytest.raises(DatasetError, match=r"no split found.*'/elsewhere/images' not found"):
        load_dataset(colab)


def test_yolo_polygon_lines_become_boxes(tmp_path: Path) -> None:
    root = tmp_path / "seg"
    write_image(root / "train" / "images" / "a.jpg", 100, 100)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "train" / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.2 0.3 0.6\n")
    (root / "data.yaml").write_text("train: train/images\nnames: [x]\n")
    np.testing.assert_allclose(load_dataset(root, strict=True).split_records("train")[0].boxes, [[10, 20, 50, 60]])


def voc_xml(filename: str, w: int, h: int, objects: list[tuple[str, list[float], int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def test_roboflow_voc_per_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "rfvoc"
    for split in ("train", "valid", "test"):
        write_image(root / split / f"{split}.jpg", 64, 48)
        (root / split / f"{split}.xml").write_text(
            voc_xml(f"{split}.jpg", 64, 48, [("dog", [1, 2, 30, 40], 0), ("cat", [5, 5, 9, 9], 1)])
        )
    assert detect_format(root) == "voc"
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cat", "dog"]
    rec = ds.split_records("test")[0]
    np.testing.assert_allclose(rec.boxes, [[1, 2, 30, 40], [5, 5, 9, 9]])
    assert rec.iscrowd.tolist() == [False, True]


def test_canonical_voc_devkit_with_image_sets(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem in ("2008_000001", "2008_000002", "2008_000003"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", 50, 40)
        (root / "Annotations" / f"{stem}.xml").write_text(
            voc_xml(f"{stem}.jpg", 50, 40, [("person", [3, 4, 20, 30], 0)])
        )
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000002\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000003\n")
    ds = load_dataset(tmp_path / "VOCdevkit", strict=True)
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == [2, 1, 0]
    assert ds.classes == ["person"]


def test_exif_rotated_image_sizes_come_from_the_oriented_header(tmp_path: Path) -> None:
    root = tmp_path / "exif"
    write_image(root / "train" / "r.jpg", 60, 40, orientation=6)  # displayed 40x60
    doc = {
        "images": [{"id": 0, "file_name": "r.jpg", "width": 60, "height": 40}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(doc))
    ds = load_dataset(root)
    rec = ds.split_records("train")[0]
    assert (rec.width, rec.height) == (40, 60)
    [p] = ds.problems.items
    assert p.kind == "size_mismatch" and "EXIF" in p.message


def test_roboflow_project_named_like_its_only_class(tmp_path: Path) -> None:
    root = tmp_path / "one"
    write_image(root / "train" / "a.jpg", 20, 20)
    doc = {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 20, "height": 20}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": [
            {"id": 0, "name": "cells", "supercategory": "none"},
            {"id": 1, "name": "cells", "supercategory": "cells"},
        ],
    }
    (root / "train" / "_annotations.coco.json").write_text(json.dumps(doc))
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cells"] and ds.split_records("train")[0].class_ids.tolist() == [0]


def test_repeated_class_names_are_disambiguated_and_reported(tmp_path: Path) -> None:
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("train: train/images\nnames: [car, car, bus]\n")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["car", "car#2", "bus"]
    [p] = ds.problems.items
    assert p.kind == "class_list" and "repeats" in p.message
