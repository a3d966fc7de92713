"""The one in-memory dataset type that every format reads into and writes from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speedmap.data.problems import ProblemLog

SPLITS: tuple[str, ...] = ("train", "valid", "test")
FORMATS: tuple[str, ...] = ("coco", "yolo", "voc")


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


@dataclass(frozen=True)
class SplitInfo:
    """Where the splits came from: ``source`` is ``dataset`` (as given) or ``automatic``."""

    source: str = "dataset"
    seed: int | None = None
    ratios: tuple[float, float, float] | None = None
    carved: tuple[str, ...] = ()  # the splits made here

    def to_json(self) -> dict[str, object]:
        ratios = list(self.ratios) if self.ratios else None
        return {"source": self.source, "seed": self.seed, "ratios": ratios, "carved": list(self.carved)}

    def describe(self) -> str:
        if self.source != "automatic":
            return "as given by the dataset"
        pct = "/".join(f"{round(100 * r)}" for r in self.ratios or ())
        return f"automatic ({', '.join(self.carved)} carved from train; {pct}, seed {self.seed})"


@dataclass(slots=True)
class ImageRecord:
    """One image and its boxes.

    ``boxes`` are absolute pixel ``xyxy`` floats in the displayed frame (EXIF orientation applied),
    ``class_ids`` index into :attr:`Dataset.classes`, ``iscrowd`` marks regions that evaluation
    ignores (COCO ``iscrowd``, VOC ``difficult``).
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    iscrowd: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if len(self.iscrowd) == 0 and len(self.class_ids):
            self.iscrowd = np.zeros(len(self.class_ids), dtype=bool)
        self.iscrowd = np.asarray(self.iscrowd, dtype=bool).reshape(-1)
        if not (len(self.boxes) == len(self.class_ids) == len(self.iscrowd)):
            raise ValueError("boxes, class_ids and iscrowd must have the same length")

    @property
    def num_boxes(self) -> int:
        return len(self.class_ids)


@dataclass
class DatasetSplit:
    """One split with its class names: what evaluation and training consume."""

    name: str
    classes: list[str]
    records: list[ImageRecord]

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class Dataset:
    """Class names and up to three splits of :class:`ImageRecord` (``train``, ``valid``, ``test``)."""

    classes: list[str]
    splits: dict[str, list[ImageRecord]]
    format: str
    root: Path
    problems: ProblemLog = field(default_factory=ProblemLog)
    split_info: SplitInfo = field(default_factory=SplitInfo)
    # the fingerprint as read, kept when the records of images that do not decode are dropped
    # (:func:`speedmap.data.verify.drop_undecodable`): which splits a command decodes does not change it
    read_fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split name(s) {sorted(unknown)}; expected {SPLITS}")

    def split_records(self, name: str) -> list[ImageRecord]:
        """The records of split ``name`` (empty when the dataset has no such split)."""
        return self.splits.get(name, [])

    def split(self, name: str) -> DatasetSplit:
        """The split ``name`` with the class names (empty when the dataset has no such split)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return DatasetSplit(name, list(self.classes), self.split_records(name))

    def all_records(self) -> Iterator[tuple[str, ImageRecord]]:
        """``(split name, record)`` for every image, splits in ``SPLITS`` order."""
        for name in SPLITS:
            for rec in self.splits.get(name, []):
                yield name, rec

    @property
    def num_images(self) -> int:
        return sum(len(v) for v in self.splits.values())

    def fingerprint(self) -> str:
        """A short hash of classes, image names, sizes and boxes: the dataset's identity in run records."""
        if self.read_fingerprint is not None:
            return self.read_fingerprint
        h = hashlib.sha256(json.dumps(self.classes).encode())
        for split, rec in self.all_records():
            h.update(f"{split}|{rec.path.name}|{rec.width}|{rec.height}|".encode())
            h.update(np.round(rec.boxes, 3).tobytes())
            h.update(rec.class_ids.tobytes())
            h.update(rec.iscrowd.tobytes())
        return h.hexdigest()[:16]
