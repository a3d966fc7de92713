"""`speedmap export`, `models list`, `predict` and `eval --model` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.engine import Model

runner = CliRunner()


def _data(run: Path) -> Path:
    return Path(json.loads((run / "train.json").read_text())["dataset"]["abspath"])


def test_export_list_and_eval_through_the_engine(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    store = tmp_path / "models"
    r = runner.invoke(app, ["export", str(tiny_run), "--out", str(store / "shapes" / "3")])
    assert r.exit_code == 0, r.output
    assert "shapes/3" in r.output and (store / "shapes" / "3" / "model.onnx").is_file()
    doc = json.loads((store / "shapes" / "3" / "model.json").read_text())
    for key in (
        "name",
        "version",
        "task",
        "classes",
        "input",
        "preprocessing",
        "size",
        "params",
        "flops",
        "training",
        "metrics",
    ):
        assert key in doc, key
    assert doc["task"] == "object-detection" and doc["name"] == "shapes" and doc["version"] == "3"
    assert doc["training"]["epochs"] == 30 and doc["training"]["total_seconds"] > 0

    r = runner.invoke(app, ["models", "list", "--models", str(store)], terminal_width=200)
    assert r.exit_code == 0 and "shapes/3" in r.output and "fast" in r.output

    r = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "shapes/3",
            "--models",
            str(store),
            "--data",
            str(_data(tiny_run)),
            "--split",
            "test",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["map"] == pytest.approx(doc["metrics"]["map"], abs=1e-9)

    r = runner.invoke(app, ["eval", "--model", "shapes/404", "--models", str(store), "--data", str(_data(tiny_run))])
    assert r.exit_code == 2 and "unknown model 'shapes/404'" in r.output and "shapes/3" in r.output
    r = runner.invoke(app, ["eval", "--model", "shapes/3", "--models", str(store)])
    assert r.exit_code == 2 and "--data" in r.output


def test_predict_writes_images_and_json_and_survives_bad_files(
    model_store: Path, tiny_run: Path, tmp_path: Path
) -> None:
    test_images = sorted((_data(tiny_run) / "test").glob("*.jpg"))[:3]
    src = tmp_path / "in"
    src.mkdir()
    for p in test_images:
        (src / p.name).write_bytes(p.read_bytes())
    good = test_images[0].read_bytes()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "notes.png").write_text("not an image")
    Image.fromarray(np.full((20, 30, 4), 200, np.uint8)).save(src / "rgba.png")
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "predict",
            "shapes/1",
            str(src),
            str(src / "*.jpg"),
            "missing.jpg",
            "--models",
            str(model_store),
            "--out",
            str(out),
            "--save-json",
            "--conf",
            "0.05",
        ],
    )
    assert r.exit_code == 1, r.output  # some inputs failed, the rest were done
    said = r.output.replace("\n", "")  # rich folds a long path anywhere (a longer temporary folder, say)
    assert "truncated.jpg" in said and "notes.png" in said and "missing.jpg" in said
    assert "Traceback" not in said
    assert "4 of 6 files done" in " ".join(r.output.split())  # folder and glob name the same images once
    for p in test_images:
        assert (out / f"{p.stem}.jpg").is_file()
        doc = json.loads((out / f"{p.stem}.json").read_text())
        assert doc["image"] == {"width": 64, "height": 64}
        ref = Model.load("shapes/1", models_dir=model_store).predict(p, conf=0.05)
        assert len(doc["predictions"]) == len(ref)
    assert Image.open(out / "rgba.jpg").size == (30, 20)


def test_predict_reads_video_frames(model_store: Path, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(5):
        frame = np.full((48, 64, 3), 40 * i, np.uint8)
        cv2.rectangle(frame, (10, 10), (40, 30), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["predict", "shapes/1", str(path), "--models", str(model_store), "--out", str(out), "--save-json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "clip.json").read_text())
    assert [f["frame"] for f in doc["frames"]] == [0, 1, 2, 3, 4]
    assert doc["frames"][0]["image"] == {"width": 64, "height": 48}
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
