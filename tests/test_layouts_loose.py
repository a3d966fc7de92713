"""Layouts as labelling tools leave them (LabelImg, CVAT, Label Studio), unsplit datasets and their split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data import detect_format, load_dataset
from speedmap.data.splitting import auto_split, parse_ratios
from speedmap.errors import DatasetError
from tests.conftest import write_image
from tests.test_layouts import voc_xml


def labelimg_voc(root: Path, n: int = 20) -> Path:
    """LabelImg's default: images/ and annotations/ side by side; <path> points to the author's machine."""
    for i in range(n):
        write_image(root / "images" / f"IMG_{i:04d}.JPG", 80, 60)
        objs = [("cell", [2, 3, 30, 40], 0)] + ([("platelet", [40, 40, 50, 52], 0)] if i % 4 == 0 else [])
        xml = voc_xml(f"IMG_{i:04d}.JPG", 80, 60, objs).replace(
            "<filename>",
            f"<folder>images</folder><path>C:\\Users\\someone\\Desktop\\images\\IMG_{i:04d}.JPG</path><filename>",
        )
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"IMG_{i:04d}.xml").write_text(xml)
    return root


def test_labelimg_voc_with_separate_folders_and_foreign_paths(tmp_path: Path) -> None:
    root = labelimg_voc(tmp_path / "labelimg")
    assert detect_format(root) == "voc"
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cell", "platelet"]
    assert list(ds.splits) == ["train"] and len(ds.split_records("train")) == 20
    rec = ds.split_records("train")[0]
    assert rec.path == root / "images" / "IMG_0000.JPG"
    np.testing.assert_allclose(rec.boxes, [[2, 3, 30, 40], [40, 40, 50, 52]])


def test_voc_filename_without_extension_and_xml_beside_images(tmp_path: Path) -> None:
    root = tmp_path / "flatvoc"
    for i in range(3):
        write_image(root / f"photo{i}.png", 40, 40, "PNG")
        (root / f"photo{i}.xml").write_text(voc_xml(f"photo{i}", 40, 40, [("dog", [1, 1, 20, 20], 0)]))
    assert detect_format(root) == "voc"
    ds = load_dataset(root, strict=True)
    assert [r.path.name for r in ds.split_records("train")] == ["photo0.png", "photo1.png", "photo2.png"]


def test_yolo_without_data_yaml_images_labels_classes_txt(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    for i in range(4):
        write_image(root / "images" / f"a{i}.jpg", 100, 50)
    (root / "labels").mkdir()
    (root / "labels" / "a0.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (root / "labels" / "a1.txt").write_text("0 0.1 0.1 0.1 0.1\n")
    (root / "labels" / "classes.txt").write_text("cat\ndog\n")  # LabelImg writes it into the label folder
    assert detect_format(root) == "yolo"
    ds = load_dataset(root, strict=True)
    assert ds.classes == ["cat", "dog"]
    recs = ds.split_records("train")
    np.testing.assert_allclose(recs[0].boxes, [[40, 15, 60, 35]])
    assert [r.num_boxes for r in recs] == [1, 1, 0, 0]  # no label file: a negative, as in YOLO


def test_flat_yolo_folder_and_split_named_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for split in ("train", "val"):
        write_image(root / split / f"{split}.jpg", 20, 20)
        (root / split / f"{split}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "obj.names").write_text("thing\n")
    ds = load_dataset(root, strict=True)
    assert ds.format == "yolo" and ds.classes == ["thing"]
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == [1, 1, 0]


def test_yolo_without_any_class_list_names_ids_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "noclasses"
    write_image(root / "x.jpg", 20, 20)
    (root / "x.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    ds = load_dataset(root)
    assert ds.classes == ["class0", "class1", "class2"]
    assert any("classes.txt" in p.message for p in ds.problems.items)


def test_cvat_coco_export_and_label_studio_paths(tmp_path: Path) -> None:
    # CVAT "COCO 1.0": annotations/instances_default.json + images/
    cvat = tmp_path / "cvat"
    write_image(cvat / "images" / "frame_000001.jpg", 40, 30)
    doc = {
        "images": [{"id": 1, "file_name": "frame_000001.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}],
        "categories": [{"id": 1, "name": "car"}],
    }
    (cvat / "annotations").mkdir()
    (cvat / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    assert load_dataset(cvat, strict=True).split_records("train")[0].path == cvat / "images" / "frame_000001.jpg"
    # Label Studio: result.json + images/, file names with the exporting machine's folders
    ls = tmp_path / "ls"
    write_image(ls / "images" / "a1b2-frame.jpg", 40, 30)
    doc["images"][0]["file_name"] = "..\\..\\label-studio\\media\\upload\\1\\a1b2-frame.jpg"
    (ls / "result.json").write_text(json.dumps(doc))
    assert load_dataset(ls, strict=True).split_records("train")[0].path == ls / "images" / "a1b2-frame.jpg"


def test_refusal_names_what_was_looked_for_and_found(tmp_path: Path) -> None:
    root = tmp_path / "nothing"
    write_image(root / "pics" / "a.jpg", 10, 10)
    (root / "pics" / "notes.xml").write_text("<annotations><version>1.1</version></annotations>")
    with pytest.raises(DatasetError) as exc:
        detect_format(root)
    msg = str(exc.value)
    assert "Pascal VOC" in msg and "data.yaml" in msg and "COCO" in msg
    assert "found 1 images, 1 .xml" in msg and "CVAT" in msg


def many_images(root: Path, n: int = 60) -> Path:
    """An unsplit YOLO folder with a rare class (3 images) and a very rare one (2 images)."""
    (root / "labels").mkdir(parents=True)
    for i in range(n):
        write_image(root / "images" / f"im{i:03d}.jpg", 32, 32)
        cls = 2 if i in (5, 17, 40) else 3 if i in (8, 9) else i % 2
        (root / "labels" / f"im{i:03d}.txt").write_text(f"{cls} 0.5 0.5 0.3 0.3\n")
    (root / "classes.txt").write_text("a\nb\nrare\nrarer\n")
    return root


def test_unsplit_dataset_gets_a_seeded_stratified_split(tmp_path: Path) -> None:
    root = many_images(tmp_path / "u")
    raw = load_dataset(root)
    ds = load_dataset(root, auto_split=True)
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == [42, 9, 9]
    assert ds.split_info.to_json() == {
        "source": "automatic",
        "seed": 0,
        "ratios": [0.7, 0.15, 0.15],
        "carved": ["valid", "test"],
    }
    for s in ("valid", "test"):  # every class in 3+ images is in valid and in test
        present = {int(c) for r in ds.split_records(s) for c in r.class_ids}
        assert {0, 1, 2} <= present
    assert 3 in {int(c) for r in ds.split_records("train") for c in r.class_ids}  # 2 images: kept in train
    names = {s: [r.path.name for r in ds.split_records(s)] for s in ("train", "valid", "test")}
    assert sorted(n for v in names.values() for n in v) == sorted(r.path.name for r in raw.split_records("train"))
    again = load_dataset(root, auto_split=True)  # reproducible
    assert {s: [r.path.name for r in again.split_records(s)] for s in names} == names
    other = auto_split(raw, seed=1)
    assert [r.path.name for r in other.split_records("test")] != names["test"]
    assert load_dataset(root, auto_split=True).fingerprint() == ds.fingerprint()


def test_existing_valid_is_kept_and_only_test_is_carved(tmp_path: Path) -> None:
    root = tmp_path / "tv"
    for split, n in (("train", 30), ("valid", 6)):
        for i in range(n):
            write_image(root / split / "images" / f"{split}{i}.jpg", 16, 16)
    (root / "data.yaml").write_text("train: train/images\nval: valid/images\nnames: [x]\n")
    ds = load_dataset(root, auto_split=True)
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == [25, 6, 5]
    assert ds.split_info.carved == ("test",)
    assert load_dataset(root, auto_split=False).split_info.source == "dataset"


def test_parse_ratios_refuses_nonsense() -> None:
    assert parse_ratios("70,15,15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_ratios("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("70,30", "a,b,c", "70,-5,35", "100,0,0", "nan,1,1"):
        with pytest.raises(DatasetError, match="--ratios"):
            parse_ratios(bad)


def test_datasets_split_writes_the_source_format_and_info_shows_the_split(tmp_path: Path) -> None:
    root = many_images(tmp_path / "u")
    runner = CliRunner()
    res = runner.invoke(app, ["datasets", "info", str(root), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["split"]["source"] == "automatic" and doc["splits"]["test"]["images"] == 9
    res = runner.invoke(app, ["datasets", "info", str(root)])
    assert "automatic" in res.stdout and "seed 0" in res.stdout
    dst = tmp_path / "split"
    res = runner.invoke(app, ["datasets", "split", str(root), str(dst), "--ratios", "80,10,10", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (dst / "data.yaml").is_file()  # YOLO in, YOLO out
    written = load_dataset(dst)
    assert written.split_info.source == "dataset"
    assert [len(written.split_records(s)) for s in ("train", "valid", "test")] == [48, 6, 6]
    assert written.classes == ["a", "b", "rare", "rarer"]
    bad = runner.invoke(app, ["datasets", "split", str(root), str(tmp_path / "x"), "--ratios", "1,2"])
    assert bad.exit_code == 2 and "--ratios" in bad.output


@pytest.mark.parametrize("to", ["yolo", "coco", "voc"])
def test_convert_writes_the_split_every_other_command_uses(tmp_path: Path, to: str) -> None:
    src = labelimg_voc(tmp_path / "labelimg", n=24)
    seen = load_dataset(src, auto_split=True)
    assert seen.split_info.source == "automatic"
    result = CliRunner().invoke(app, ["datasets", "convert", str(src), str(tmp_path / to), "--to", to])
    assert result.exit_code == 0, result.output
    assert "carved from train" in result.stdout and "seed 0" in result.stdout
    out = load_dataset(tmp_path / to)
    assert out.split_info.source == "dataset"  # the split is now the dataset's own
    for split in ("train", "valid", "test"):
        want = sorted(r.path.stem.lower() for r in seen.split_records(split))
        assert want and sorted(r.path.stem.lower() for r in out.split_records(split)) == want, split
    as_given = CliRunner().invoke(
        app, ["datasets", "convert", str(src), str(tmp_path / "raw"), "--to", to, "--as-given"]
    )
    assert as_given.exit_code == 0 and "as given" in as_given.stdout
    assert len(load_dataset(tmp_path / "raw").split_records("train")) == 24
