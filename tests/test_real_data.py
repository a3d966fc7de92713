"""Real photos as users bring them (tests/data/real: subsets of three public datasets, NOTICE.txt has their
sources and licences), through the loop: load -> split -> train -> export (fp32 and int8) -> eval -> serve."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data import load_dataset
from speedmap.data.imgsz import MIN_IMGSZ, choose_imgsz
from speedmap.data.tasks import default_imgsz
from speedmap.imageio import read_image
from tests.test_serve import start_server

REAL = Path(__file__).parent / "data" / "real"
runner = CliRunner()


def test_real_subsets_load_with_their_quirks_named() -> None:
    bccd = load_dataset(REAL / "bccd", auto_split=True)  # a VOC devkit without ImageSets: unsplit
    assert bccd.format == "voc" and bccd.classes == ["Platelets", "RBC", "WBC"]
    assert sorted(p.kind for p in bccd.problems.items) == ["zero_area_box", "zero_area_box"]
    assert {"BloodImage_00338.xml object #13", "BloodImage_00343.xml object #4"} == {
        Path(p.file).name for p in bccd.problems.items
    }
    assert bccd.split_info.source == "automatic" and all(bccd.split_records(s) for s in ("valid", "test"))
    raccoon = load_dataset(REAL / "raccoon", auto_split=True)  # LabelImg's images/ + annotations/
    assert raccoon.classes == ["raccoon"] and raccoon.num_images == 12 and not raccoon.problems
    grey = next(r for _, r in raccoon.all_records() if r.path.name == "raccoon-150.jpg")
    assert read_image(grey.path).shape == (grey.height, grey.width, 3)  # greyscale JPEG decoded to RGB
    road = load_dataset(REAL / "roadsign")
    rgba = road.split_records("train")[0]
    assert rgba.path.suffix == ".png" and read_image(rgba.path).shape[2] == 3  # RGBA PNG
    edge = next(r for r in road.split_records("train") if r.path.stem == "road38")
    assert edge.boxes[:, :2].min() == 0  # a box on the border is kept, not dropped


def test_input_size_follows_the_objects() -> None:
    size, why = choose_imgsz(load_dataset(REAL / "bccd", auto_split=True))
    assert MIN_IMGSZ < size <= 640 and "px" in why  # platelets are small on 640 px images
    size, why = choose_imgsz(load_dataset(REAL / "raccoon", auto_split=True))
    assert size == MIN_IMGSZ and "large" in why  # raccoons fill the frame
    assert default_imgsz(REAL / "raccoon") == (size, why)  # `speedmap train` without --imgsz


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("real") / "run"
    r = runner.invoke(
        app,
        [
            "train",
            str(REAL / "bccd"),
            "--size",
            "fast",
            "--epochs",
            "3",
            "--imgsz",
            "128",
            "--batch",
            "4",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    return out


def test_real_images_train_export_eval_and_serve(real_run: Path, tmp_path: Path) -> None:
    record = json.loads((real_run / "train.json").read_text())
    assert record["dataset"]["train_images"] == 11 and record["epochs_run"] == 3  # the automatic split's train
    store = tmp_path / "models"
    for version, extra in (("1", []), ("2", ["--int8", str(REAL / "bccd")])):
        r = runner.invoke(app, ["export", str(real_run), "--out", str(store / "bccd" / version), *extra])
        assert r.exit_code == 0, r.output
    doc = json.loads((store / "bccd" / "2" / "model.json").read_text())
    assert doc["classes"] == ["Platelets", "RBC", "WBC"]
    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "bccd/1",
            "--models",
            str(store),
            "--data",
            str(REAL / "bccd"),
            "--split",
            "test",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout)
    assert 0.0 <= metrics["map"] <= 1.0
    proc, url = start_server(store)
    try:
        jpeg = (REAL / "bccd" / "BCCD" / "JPEGImages" / "BloodImage_00338.jpg").read_bytes()
        for model in ("bccd/1", "bccd/2"):
            resp = httpx.post(f"{url}/{model}?confidence=1", content=base64.b64encode(jpeg), timeout=30)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["image"] == {"width": 640, "height": 480}
            preds = body["predictions"]
            assert all(p["class"] in doc["classes"] for p in preds)
            assert all(0 <= p["x"] <= 640 and 0 <= p["y"] <= 480 for p in preds)
        png = (REAL / "roadsign" / "images" / "road38.png").read_bytes()  # RGBA PNG through the server
        resp = httpx.post(f"{url}/bccd/1", content=base64.b64encode(png), timeout=30)
        assert (
            resp.status_code == 200
            and resp.json()["image"]["width"] == read_image(REAL / "roadsign" / "images" / "road38.png").shape[1]
        )
    finally:
        proc.terminate()
        proc.wait(10)
    assert np.isfinite(metrics["map50"])


def test_a_study_on_an_unsplit_real_folder_times_training_before_stating_its_duration(tmp_path: Path) -> None:
    """`compare` on a LabelImg folder (images/ + annotations/, unsplit): the split, the input size from the boxes,
    training timed on the data before the duration is stated, and the int8 models scored and benchmarked."""
    out = tmp_path / "study"
    args = ["compare", str(REAL / "raccoon"), "--epochs", "2", "--batch", "4", "--bench-seconds", "0.3"]
    args += ["--bench-repeats", "1", "--bench-requests", "10", "--no-bench-retry", "--targets", "local"]
    r = runner.invoke(app, [*args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    order = [said.find(w) for w in ("timing Fast and Accurate", "measured training speed", "expected duration")]
    assert -1 not in order and order == sorted(order), order  # the probe runs before the estimate is stated
    # the probe at the box rule's size, then at the larger size the budget fits (--epochs 2 fit at twice the size);
    # the study reuses both
    assert said.count("timing Fast and Accurate") == 2 and "instead: the budget fits the full schedule" in said
    task = json.loads((out / "results.json").read_text())["tasks"]["raccoon"]
    assert task["split"]["source"] == "automatic" and task["split"]["seed"] == 0
    assert task["split"]["ratios"] == [0.7, 0.15, 0.15] and sorted(task["split"]["carved"]) == ["test", "valid"]
    floor, reason = choose_imgsz(load_dataset(REAL / "raccoon", auto_split=True))
    size = task["imgsz"]
    assert size == 2 * floor and task["imgsz_reason"].startswith(reason)
    assert f"the budget fits both sizes' full 2-epoch schedule at {size} px" in task["imgsz_reason"]
    plan = task["plan"]
    assert set(plan["ips"]) == {"fast", "accurate"} and plan["ips"]["fast"] > plan["ips"]["accurate"] > 0
    assert plan["spent_seconds"] > 0  # the probe's time counts in the stated total
    for e in task["sizes"].values():
        q = e["int8"]
        assert 0 <= q["metrics"]["map"] <= 1 and 0 <= q["metrics"]["map50"] <= 1
        assert q["metrics"]["map_ci95"][0] <= q["metrics"]["map"] <= q["metrics"]["map_ci95"][1]
        for s in (e["speed"]["local"], q["speed"]["local"]):
            assert s["single"]["p50_ms"] > 0 and isinstance(s["contended"], bool) and s["other_cpu_share"] >= 0
    md = (out / "report.md").read_text()
    assert f"{size} px" in md and "speedmap split it" in md and "int8 exports" in md
