"""Datasets as labelling tools leave them, found by what the files hold rather than by folder names.

- Pascal VOC XML in any folder (LabelImg's ``images/`` + ``annotations/``, or XML beside each image): the
  XML's ``filename`` locates the image anywhere under the root; its ``path`` (the author's machine) is ignored.
- YOLO label files without ``data.yaml`` (``images/`` + ``labels/`` + ``classes.txt``, or flat): a label is
  found where Ultralytics looks (``images`` -> ``labels``), beside the image, or by name in the tree.

A folder named like a split (``train``, ``val``, ``valid``, ``test``) anywhere in a file's path sets its split;
everything else is ``train`` (and :mod:`speedmap.data.splitting` carves the rest).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from speedmap.data.coco import SPLIT_ALIASES
from speedmap.data.dataset import SPLITS, Dataset
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.data.scan import Scan, is_voc_xml
from speedmap.data.voc import assemble_voc
from speedmap.data.yolo import label_path, read_yolo_images
from speedmap.errors import DatasetError


def split_of(path: Path, root: Path) -> str:
    """The split a file's folders name (the innermost one), else ``train``."""
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return "train"


class ImageIndex:
    """Images under a root, looked up by file name and by stem (case-insensitive as a fallback)."""

    def __init__(self, images: list[Path]) -> None:
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in images:
            self.by_name.setdefault(p.name.lower(), []).append(p)
            self.by_stem.setdefault(p.stem.lower(), []).append(p)

    def find(self, xml: Path, filename: str | None) -> Path:
        """The image an annotation names: beside it first, then anywhere by name, then by the XML's stem."""
        name = Path((filename or "").replace("\\", "/")).name
        if name and (xml.parent / name).is_file():
            return xml.parent / name
        for table, k in (
            (self.by_name, name.lower()),
            (self.by_stem, Path(name).stem.lower()),
            (self.by_stem, xml.stem.lower()),
        ):
            hits = table.get(k) if k else None
            if hits:
                return _closest(hits, xml)
        return xml.parent / (name or f"{xml.stem}.jpg")  # missing: probe_images names it


def _closest(paths: list[Path], near: Path) -> Path:
    """Of several same-named images, the one sharing the longest folder prefix with ``near``."""

    def shared(p: Path) -> int:
        return len(os.path.commonpath([p.parent, near.parent]))

    return max(paths, key=shared)


def voc_groups(s: Scan) -> tuple[dict[str, list[tuple[Path, Path]]], Callable[[Path, Path, str | None], Path]]:
    """Per split, ``(xml, folder)`` of every VOC file, and the function that finds each one's image."""
    groups: dict[str, list[tuple[Path, Path]]] = {}
    for x in s.xml:
        if is_voc_xml(x):
            groups.setdefault(split_of(x, s.root), []).append((x, x.parent))
    index = ImageIndex(s.images)
    return groups, lambda _folder, xml, filename: index.find(xml, filename)


def read_loose_voc(s: Scan) -> Dataset:
    groups, find = voc_groups(s)
    if not groups:
        raise DatasetError(f"no Pascal VOC XML (<annotation> files) under {s.root}; found {s.summary()}")
    return assemble_voc(groups, find, s.root, ProblemLog())


def yolo_label_finder(s: Scan) -> Callable[[Path], Path]:
    """Image -> its label file: Ultralytics' ``images``->``labels`` swap, beside it, or the one same-stem
    ``.txt`` in the tree; a missing file means a negative image, as in YOLO."""
    by_stem: dict[str, list[Path]] = {}
    for t in s.txt:
        by_stem.setdefault(t.stem.lower(), []).append(t)

    def find(img: Path) -> Path:
        swapped = label_path(img)
        if swapped.is_file():
            return swapped
        beside = img.with_suffix(".txt")
        if beside.is_file():
            return beside
        hits = by_stem.get(img.stem.lower())
        return _closest(hits, img) if hits else swapped

    return find


def read_loose_yolo(s: Scan) -> Dataset:
    if not s.images:
        raise DatasetError(f"no YOLO dataset at {s.root}: no data.yaml and no images; found {s.summary()}")
    log = ProblemLog()
    classes = _class_names(s, log)
    find = yolo_label_finder(s)
    per_split: dict[str, list[Path]] = {}
    for img in s.images:
        per_split.setdefault(split_of(img, s.root), []).append(img)
    splits = {sp: read_yolo_images(imgs, classes, log, find) for sp, imgs in per_split.items()}
    ordered = {sp: splits[sp] for sp in SPLITS if sp in splits}
    return Dataset(classes, ordered, "yolo", s.root, log)


def _class_names(s: Scan, log: ProblemLog) -> list[str]:
    """From the shallowest class file (``classes.txt``, ``obj.names``, ...), else ``class0..N`` from the labels."""
    if s.class_files:
        f = min(s.class_files, key=lambda p: (len(p.relative_to(s.root).parts), str(p)))
        try:
            names = [ln.strip() for ln in f.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{f}: cannot read the class list ({exc})") from exc
        if names:
            return names
    top = -1
    for t in s.txt:
        try:
            for line in t.read_text(encoding="utf-8").splitlines():
                head = line.split()[:1]
                if head and head[0].isdigit():
                    top = max(top, int(head[0]))
        except (OSError, UnicodeDecodeError):
            continue
    names = [f"class{k}" for k in range(top + 1)]
    log.add(
        Kind.CLASS_LIST,
        s.root,
        f"no classes.txt (or obj.names) found: the {len(names)} class ids are named class0..class{top}",
        Action.KEPT,
    )
    return names
