"""One way to fail: errors a user can act on are SpeedmapErrors, and the CLI turns them into one line.

A truncated image met while scoring a model (``eval --model``, and export's test-split scoring) used to
end in a traceback because ``ImageReadError`` was a ``ValueError``; then in a clean error. Now it is skipped
and named (tests/test_broken_images.py has the whole story), and export still keeps a model it cannot score.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speedmap.cli import app
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.errors import MissingExtra, SpeedmapError
from speedmap.imageio import ImageReadError, read_image


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact: the dataset loads, decoding fails


def _dataset_copy(tiny_run: Path, dst: Path) -> tuple[Path, str]:
    """The tiny run's dataset copied to ``dst`` with its first test image truncated; that image's name."""
    src = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
    shutil.copytree(src, dst)
    victim = sorted((dst / "test").glob("*.jpg"))[0]
    _truncate(victim)
    return dst, victim.name


def test_image_read_error_is_a_speedmap_error_not_a_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SpeedmapError) as info:
        read_image(bad)
    assert isinstance(info.value, ImageReadError) and not isinstance(info.value, ValueError)


def test_missing_extra_names_the_feature_the_extra_and_the_package() -> None:
    try:
        import speedmap_no_such_package  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        err = MissingExtra("--ray (Ray Serve)", "ray", exc)
    assert isinstance(err, SpeedmapError)
    assert str(err) == (
        "--ray (Ray Serve) needs the 'ray' extra (speedmap_no_such_package is not installed): "
        "pip install 'speedmap[ray]'"
    )


def test_problem_kinds_and_actions_are_enums_and_unknown_ones_are_refused() -> None:
    log = ProblemLog()
    log.add(Kind.CORRUPT_IMAGE, "a.jpg", "truncated", Action.SKIPPED_IMAGE)
    log.add("zero_area_box", "a.txt", "w is 0", "box skipped", line=3)  # strings are read as members
    assert [p.kind for p in log.items] == [Kind.CORRUPT_IMAGE, Kind.ZERO_AREA_BOX]
    assert log.items[1].action is Action.SKIPPED_BOX
    assert log.to_json()[1] == {
        "kind": "zero_area_box",
        "file": "a.txt",
        "line": 3,
        "message": "w is 0",
        "action": "box skipped",
    }
    assert log.summary_lines()[0].endswith("image unreadable or corrupt (image skipped)")
    with pytest.raises(ValueError, match="not a valid Kind"):
        log.add("melted_image", "a.jpg", "?", Action.KEPT)


def test_eval_model_skips_a_truncated_image_and_names_it(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    data, name = _dataset_copy(tiny_run, tmp_path / "data")
    r = CliRunner().invoke(app, ["eval", "--model", "shapes/1", "--models", str(model_store), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "error:" not in r.output
    assert name in r.output and "image skipped" in r.output


def _run_on(tiny_run: Path, data: Path, run: Path) -> Path:
    """A copy of the tiny run at ``run`` whose record points at the dataset ``data``."""
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "train.json").read_text())
    record["dataset"]["abspath"] = str(data)
    (run / "train.json").write_text(json.dumps(record))
    return run


def test_export_scores_without_a_truncated_image(tiny_run: Path, tmp_path: Path) -> None:
    data, name = _dataset_copy(tiny_run, tmp_path / "data")
    out = tmp_path / "store" / "shapes" / "9"
    r = CliRunner().invoke(app, ["export", str(_run_on(tiny_run, data, tmp_path / "run")), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and name in r.output
    metrics = json.loads((out / "model.json").read_text())["metrics"]
    assert [Path(f).name for f in metrics["corrupt_images"]] == [name]
    assert metrics["images"] == len(list((data / "test").glob("*.jpg"))) - 1


def test_export_keeps_the_model_when_scoring_fails(tiny_run: Path, tmp_path: Path) -> None:
    data, _ = _dataset_copy(tiny_run, tmp_path / "data")
    for ann in data.glob("*/_annotations.coco.json"):  # classes the model does not know: nothing to score
        doc = json.loads(ann.read_text())
        for cat in doc["categories"]:
            cat["name"] = f"other {cat['name']}"
        ann.write_text(json.dumps(doc))
    out = tmp_path / "store" / "shapes" / "9"
    r = CliRunner().invoke(app, ["export", str(_run_on(tiny_run, data, tmp_path / "run")), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "the model is exported, but scoring it on the dataset failed" in r.output and "share no name" in r.output
    assert (out / "model.onnx").is_file()
    assert json.loads((out / "model.json").read_text()).get("metrics") is None  # no score rather than a wrong one
