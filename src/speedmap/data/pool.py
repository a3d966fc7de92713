"""A pretraining pool: real labelled datasets and generated scenes merged into one dataset (``speedmap pretrain
--pool``).

Every image of every split of each source dataset (any layout :func:`~speedmap.data.load_dataset` reads) is
decoded once, resized so its long side is at most the pool's size, and written with its boxes into one COCO
dataset beside the generated scenes. Classes stay apart: a source's class ``car`` becomes ``SOURCE/car``, so
nothing is merged by name across sources. Fine-tuning replaces the class head, so what carries over is the
class-agnostic part: features, objectness, box regression. A source's images go 90% to ``train`` and 10% to
``valid`` (seeded), the scenes keep their splits (their ``test`` too, so that training, which carves a test split
from a dataset without one, takes no real image away). ``pool.json`` records what made the pool (each source's name,
fingerprint, images and classes; no path), and the same sources and settings reuse a made pool.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from speedmap.data.dataset import SPLITS, Dataset, ImageRecord
from speedmap.data.io import load_dataset, save_dataset
from speedmap.data.writing import check_output
from speedmap.errors import DatasetError
from speedmap.imageio import ImageReadError, read_image

POOL_FILE = "pool.json"
POOL_VERSION = 2  # bump when the pool's files change for the same sources and settings
VALID_SHARE = 0.10  # of each source's images, held out to validate the pretraining
JPEG_QUALITY = 92
PER_SOURCE = 1000  # images at most from one source (a seeded sample of a larger one)


@dataclass(frozen=True)
class PoolSource:
    """One source dataset as the pool records it."""

    name: str
    fingerprint: str
    images: int
    boxes: int
    classes: list[str]
    skipped: int = 0  # images that did not decode

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "images": self.images,
            "boxes": self.boxes,
            "classes": self.classes,
            "skipped": self.skipped,
        }


def source_name(folder: Path) -> str:
    """A source's name in class names and records: its folder's name as given (a link's own name; the data
    folder of a clone's ``dataset/`` is named by its parent)."""
    folder = folder.absolute()
    return folder.parent.name if folder.name in {"dataset", "data", "images"} else folder.name


def load_sources(folders: Sequence[str | Path]) -> list[tuple[str, Dataset]]:
    """Each source folder's name and dataset, read once; names must be distinct (they prefix the classes)."""
    paths = [Path(f) for f in folders]
    names = [source_name(f) for f in paths]
    if len(set(names)) != len(names):
        raise DatasetError(f"pool sources need distinct folder names, got {', '.join(names)}")
    return [(n, load_dataset(f)) for n, f in zip(names, paths, strict=True)]


def pool_meta(
    sources: Sequence[tuple[str, Dataset]], scenes: Path, imgsz: int, seed: int, per_source: int
) -> dict[str, Any]:
    """What fixes a pool's files: the sources' names and fingerprints, the scenes' task record, size, seed and
    the cap on images per source."""
    try:
        task = json.loads((scenes / "task.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        task = None
    return {
        "version": POOL_VERSION,
        "sources": [{"name": n, "fingerprint": ds.fingerprint()} for n, ds in sources],
        "scenes": task,
        "imgsz": imgsz,
        "seed": seed,
        "per_source": per_source,
    }


def is_pool_made(dst: Path, meta: dict[str, Any]) -> bool:
    try:
        old = json.loads((dst / POOL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and {k: old.get(k) for k in meta} == meta


def build_pool(
    sources: Sequence[tuple[str, Dataset]],
    scenes: str | Path,
    dst: str | Path,
    imgsz: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    per_source: int = PER_SOURCE,
) -> Path:
    """The pool of ``sources`` (:func:`load_sources`) and the generated ``scenes`` (a made task folder) in
    ``dst``, made once; a source of more than ``per_source`` images gives a seeded sample of that many, so no one
    source dominates.

    Built in a hidden folder beside ``dst`` and renamed into place, so an interrupted build leaves nothing
    half-written; a source without any image that decodes is an error naming it."""
    scenes, dst = Path(scenes), Path(dst)
    meta = pool_meta(sources, scenes, imgsz, seed, per_source)
    if is_pool_made(dst, meta):
        return dst
    if dst.exists():
        if not (dst / POOL_FILE).is_file():
            check_output(dst)
        shutil.rmtree(dst)  # a pool made from other sources or settings: remade
    base = load_dataset(scenes)
    classes = list(base.classes)
    splits: dict[str, list[ImageRecord]] = {s: list(base.split_records(s)) for s in SPLITS}
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        total, done = sum(min(ds.num_images, per_source) for _, ds in sources), 0
        recorded: list[PoolSource] = []
        for name, ds in sources:
            offset = len(classes)
            classes += [f"{name}/{c}" for c in ds.classes]
            rng = np.random.default_rng([seed, len(recorded)])
            records = [r for _, r in ds.all_records()]
            if len(records) > per_source:
                records = [records[i] for i in sorted(rng.choice(len(records), per_source, replace=False))]
            kept, boxes, skipped = 0, 0, 0
            for i, rec in enumerate(records):
                done += 1
                if progress is not None:
                    progress(done, total)
                out = _resized(rec, work / "img" / name / f"{i:05d}.jpg", imgsz, offset)
                if out is None:
                    skipped += 1
                    continue
                splits["valid" if rng.random() < VALID_SHARE else "train"].append(out)
                kept, boxes = kept + 1, boxes + out.num_boxes
            if not kept:
                raise DatasetError(f"pool source {name}: no image decodes")
            recorded.append(PoolSource(name, ds.fingerprint(), kept, boxes, list(ds.classes), skipped))
        pool = Dataset(classes, {s: v for s, v in splits.items() if v}, "coco", work)
        save_dataset(pool, work / "out", format="coco", transfer="copy")
        record = meta | {"classes": len(classes), "detail": [r.to_json() for r in recorded]}
        (work / "out" / POOL_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (work / "out").rename(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dst


def read_pool_record(dst: str | Path) -> dict[str, Any] | None:
    """``pool.json`` of a made pool (None when ``dst`` is not one)."""
    try:
        record = json.loads((Path(dst) / POOL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _resized(rec: ImageRecord, path: Path, imgsz: int, offset: int) -> ImageRecord | None:
    """``rec``'s image decoded, shrunk so its long side is at most ``imgsz``, written to ``path``; its boxes
    follow and its classes move by ``offset``. None when the image does not decode."""
    try:
        img = read_image(rec.path)
    except (ImageReadError, OSError):
        return None
    h, w = img.shape[:2]
    r = min(1.0, imgsz / max(h, w))
    if r < 1:
        img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise DatasetError(f"could not write {path.name}")
    nh, nw = img.shape[:2]
    boxes = np.clip(rec.boxes * np.float32(r), 0, [nw, nh, nw, nh]).astype(np.float32)
    return ImageRecord(path, nw, nh, boxes, rec.class_ids + offset, rec.iscrowd.copy())
