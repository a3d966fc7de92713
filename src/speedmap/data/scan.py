"""What a folder holds, by kind of file: the evidence :mod:`speedmap.data.layout` decides a layout from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from speedmap.data.build import IMAGE_SUFFIXES
from speedmap.errors import DatasetError

MAX_FILES = 200_000  # a tree larger than this is not a dataset folder (a home directory, say)
YOLO_CLASS_FILES = ("classes.txt", "obj.names", "_darknet.labels", "classes.names")
SKIP_TXT = {*YOLO_CLASS_FILES, "labels.txt", "labelmap.txt", "predefined_classes.txt", "readme.txt", "license.txt"}


@dataclass
class Scan:
    """What a folder holds, by kind of file (hidden folders skipped)."""

    root: Path
    images: list[Path] = field(default_factory=list)
    xml: list[Path] = field(default_factory=list)
    txt: list[Path] = field(default_factory=list)
    json: list[Path] = field(default_factory=list)
    class_files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.images)} images, {len(self.xml)} .xml, {len(self.txt)} .txt, {len(self.json)} .json files"


def scan(root: Path) -> Scan:
    out = Scan(root)
    seen = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES:
                raise DatasetError(f"{root}: more than {MAX_FILES} files; point to the dataset's own folder")
            p = Path(folder) / name
            suffix, low = p.suffix.lower(), name.lower()
            if suffix in IMAGE_SUFFIXES:
                out.images.append(p)
            elif suffix == ".xml":
                out.xml.append(p)
            elif low in YOLO_CLASS_FILES or suffix == ".names":
                out.class_files.append(p)
            elif suffix == ".txt" and low not in SKIP_TXT:
                out.txt.append(p)
            elif suffix == ".json":
                out.json.append(p)
    return out


def is_voc_xml(path: Path) -> bool:
    """A Pascal VOC annotation (root element ``<annotation>``), not CVAT's ``<annotations>`` or anything else."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return False
    i = head.find("<annotation")
    return i >= 0 and not head.startswith("<annotations", i)


def has_voc_xml(s: Scan) -> bool:
    return any(is_voc_xml(x) for x in s.xml)


def has_yolo_labels(s: Scan) -> bool:
    stems = {p.stem.lower() for p in s.images}
    return bool(s.images) and any(t.stem.lower() in stems for t in s.txt)
