"""Built-in tasks: deterministic, loadable in every format, and covering what the study needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speedmap.data import load_dataset
from speedmap.data.tasks import DEFAULT_TASK, TASKS, make_task
from speedmap.data.tasks.make import split_counts
from speedmap.errors import DatasetError
from tests.test_roundtrip import assert_same


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", list(TASKS))
def test_same_seed_gives_byte_identical_files(tmp_path: Path, task: str) -> None:
    a = files(make_task(task, tmp_path / "a", seed=3, images=10, imgsz=128))
    b = files(make_task(task, tmp_path / "b", seed=3, images=10, imgsz=128))
    c = files(make_task(task, tmp_path / "c", seed=4, images=10, imgsz=128))
    assert a == b
    ann = [k for k in a if k.endswith(".json") and k != "task.json"]
    assert len(ann) == 3 and any(a[k] != c[k] for k in ann)
    ds = load_dataset(tmp_path / "a", strict=True)
    assert ds.classes == list(TASKS[task].classes)
    assert [len(ds.split_records(s)) for s in ("train", "valid", "test")] == list(split_counts(10))


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_task_in_other_formats_has_the_same_content(tmp_path: Path, fmt: str) -> None:
    coco = load_dataset(make_task("crowd", tmp_path / "coco", seed=1, images=8, imgsz=128), strict=True)
    other = load_dataset(make_task("crowd", tmp_path / fmt, seed=1, images=8, imgsz=128, format=fmt), strict=True)
    assert other.format == fmt
    assert_same(coco, other)


def sample(task: str, n: int = 40, size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        _, boxes, cls = TASKS[task].render(np.random.default_rng([11, i]), size)
        out.append((boxes, cls))
    return out


def iou_max(boxes: np.ndarray) -> float:
    if len(boxes) < 2:
        return 0.0
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / (area[:, None] + area[None, :] - inter)
    np.fill_diagonal(iou, 0)
    return float(iou.max())


def test_tasks_cover_scale_crowding_fine_grain_clutter_imbalance_and_negatives() -> None:
    assert len(TASKS) >= 4 and DEFAULT_TASK in TASKS
    sides = lambda s: np.concatenate([np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)) for b, _ in s])  # noqa: E731
    tiny, shapes = sample("tiny"), sample("shapes")
    assert np.median(sides(tiny)) < 16 < np.median(sides(shapes))  # object scale
    crowd = sample("crowd")
    assert np.mean([len(b) for b, _ in crowd]) > 10  # crowding
    assert np.mean([iou_max(b) > 0.3 for b, _ in crowd if len(b)]) > 0.5  # heavy overlap / occlusion
    fine = sample("fine", 80)
    assert set(np.concatenate([c for _, c in fine]).tolist()) == set(range(6))  # six fine-grained classes
    clutter = sample("clutter", 120)
    counts = np.bincount(np.concatenate([c for _, c in clutter]), minlength=3)
    assert counts[0] > 2 * counts[1] > 2 * counts[2] > 0  # imbalance
    negatives = np.mean([len(c) == 0 for _, c in clutter])
    assert 0.15 < negatives < 0.4
    for task in TASKS:  # every task has some negatives in a default-sized set
        assert any(len(c) == 0 for _, c in sample(task, 100, 128))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown task 'nope'"):
        make_task("nope", tmp_path / "x")
    with pytest.raises(DatasetError, match="imgsz"):
        make_task("shapes", tmp_path / "y", imgsz=10)


def test_interrupted_make_leaves_nothing_half_written_and_rerun_reuses(tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_task("shapes", tmp_path / "t", images=10, imgsz=128, progress=interrupt)
    assert list(tmp_path.iterdir()) == []
    make_task("shapes", tmp_path / "t", images=10, imgsz=128)
    stamp = (tmp_path / "t" / "train" / "_annotations.coco.json").stat().st_mtime_ns
    make_task("shapes", tmp_path / "t", images=10, imgsz=128)  # same arguments: reused, not rewritten
    assert (tmp_path / "t" / "train" / "_annotations.coco.json").stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match="not empty"):
        make_task("shapes", tmp_path / "t", images=11, imgsz=128)


def test_descriptive_text_changes_do_not_invalidate_a_made_task(tmp_path: Path) -> None:
    import json

    make_task("shapes", tmp_path / "t", images=5, imgsz=64)
    meta_file = tmp_path / "t" / "task.json"
    meta = json.loads(meta_file.read_text())
    meta["difficulty"] = "an older wording"
    meta_file.write_text(json.dumps(meta))
    make_task("shapes", tmp_path / "t", images=5, imgsz=64)  # reused, no "not empty" error
    meta["seed"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="not empty"):
        make_task("shapes", tmp_path / "t", images=5, imgsz=64)
