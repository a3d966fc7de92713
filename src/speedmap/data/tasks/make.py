"""Write a built-in task to disk in any dataset format."""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from speedmap.data.dataset import SPLITS, Dataset, ImageRecord
from speedmap.data.imgsz import choose_imgsz
from speedmap.data.io import load_dataset, save_dataset
from speedmap.data.tasks.builtin import TASKS, Task
from speedmap.data.tasks.mixture import PRETRAIN_TASKS
from speedmap.data.writing import check_output
from speedmap.errors import DatasetError

SPLIT_SHARES = (0.70, 0.15, 0.15)
DEFAULT_IMAGES = 600
DEFAULT_IMGSZ = 256
TASK_FILE = "task.json"
GENERATOR_VERSION = 1  # bump when rendering changes: made tasks are then regenerated
TASK_TRAIN_IMGSZ = 256  # training input size for a built-in task when none is asked for


def default_imgsz(data: str | Path) -> tuple[int, str]:
    """The training input size for ``data`` when the user gives none, and why: :data:`TASK_TRAIN_IMGSZ` for a
    built-in task (a folder holding ``task.json``, or an annotation file in one), else from its boxes
    (:func:`speedmap.data.imgsz.choose_imgsz`)."""
    path = Path(data)
    root = path if path.is_dir() else path.parent
    if (root / TASK_FILE).is_file():
        return TASK_TRAIN_IMGSZ, "a built-in task"
    return choose_imgsz(load_dataset(path, auto_split=True))


def split_counts(n: int) -> tuple[int, int, int]:
    """Images per split (70/15/15), at least one each when ``n >= 3``."""
    valid = max(1, round(n * SPLIT_SHARES[1])) if n >= 3 else 0
    test = max(1, round(n * SPLIT_SHARES[2])) if n >= 3 else 0
    return n - valid - test, valid, test


def generator(name: str) -> Task | None:
    """A built-in task, or a scene generator only pretraining uses (``mixture``); None if neither."""
    return TASKS.get(name) or PRETRAIN_TASKS.get(name)


def check_task_args(name: str, dst: str | Path, images: int, imgsz: int) -> None:
    """Fail fast, before any work, on arguments :func:`make_task` cannot use."""
    if generator(name) is None:
        raise DatasetError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    if images < 1:
        raise DatasetError("--images must be at least 1")
    if not 64 <= imgsz <= 4096:
        raise DatasetError("--imgsz must be between 64 and 4096")
    check_output(Path(dst))


def task_meta(name: str, seed: int, images: int, imgsz: int, format: str) -> dict[str, Any]:
    """What ``task.json`` records: everything that determines the generated files."""
    task = generator(name)
    assert task is not None, name
    return {
        "task": name,
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "images": images,
        "imgsz": imgsz,
        "format": format,
        "classes": list(task.classes),
        "tests": task.tests,
        "difficulty": task.difficulty,
    }


DETERMINING = ("task", "generator", "seed", "images", "imgsz", "format")  # what fixes the files' bytes


def is_made(dst: str | Path, meta: dict[str, Any]) -> bool:
    """True when ``dst`` already holds exactly this task (same arguments, same generator); descriptive
    fields such as the difficulty text may differ."""
    try:
        old = json.loads((Path(dst) / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and all(old.get(k) == meta.get(k) for k in DETERMINING)


def make_task(
    name: str,
    dst: str | Path,
    seed: int = 0,
    images: int = DEFAULT_IMAGES,
    imgsz: int = DEFAULT_IMGSZ,
    format: str = "coco",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate task ``name`` into ``dst``; the same arguments give byte-identical files.

    A folder that already holds the same task is reused. The task is built in a hidden folder beside
    ``dst`` and renamed into place at the end, so an interrupted run leaves nothing half-written.
    """
    dst = Path(dst)
    if generator(name) is not None and is_made(dst, task_meta(name, seed, images, imgsz, format)):
        return dst
    check_task_args(name, dst, images, imgsz)
    task = generator(name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        salt = zlib.crc32(name.encode())
        splits: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
        bounds = np.cumsum(split_counts(images))
        (work / "render").mkdir()
        for i in range(images):
            rng = np.random.default_rng([seed, salt, i])
            image, boxes, cls = task.render(rng, imgsz)
            path = work / "render" / f"{name}_{i:05d}.jpg"
            image.save(path, format="JPEG", quality=92)
            split = SPLITS[int(np.searchsorted(bounds, i, side="right"))]
            splits[split].append(ImageRecord(path, imgsz, imgsz, boxes, cls))
            if progress is not None:
                progress(i + 1, images)
        ds = Dataset(list(task.classes), {s: v for s, v in splits.items() if v}, format, work)
        save_dataset(ds, work / "out", format=format, transfer="move")
        meta = task_meta(name, seed, images, imgsz, format)
        (work / "out" / TASK_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if dst.exists():
            dst.rmdir()  # empty: checked above
        (work / "out").rename(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dst
