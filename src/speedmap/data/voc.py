"""Pascal VOC XML: ``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main``, or Roboflow's export with
the XML beside each image in ``{train,valid,test}/`` folders.

``difficult`` objects map to ``iscrowd`` (both mean: ignored by evaluation). Coordinates are read and
written as given (no 1-pixel offset), as Roboflow and most current tools do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from html import escape as _html_escape
from pathlib import Path

import numpy as np

from speedmap.data.build import IMAGE_SUFFIXES, build_records, probe_images
from speedmap.data.coco import SPLIT_ALIASES
from speedmap.data.dataset import SPLITS, Dataset, ImageRecord
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.data.writing import Transfer, number, place_image, prepare_output, unique_names
from speedmap.errors import DatasetError


def escape(text: str) -> str:
    """XML text escaping (``xml.sax.saxutils`` would pull in urllib at import time)."""
    return _html_escape(text, quote=False)


CLASS_FILES = ("classes.txt", "labels.txt", "labelmap.txt")
IMAGESET_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def find_voc_root(path: Path) -> Path | None:
    """The folder holding ``Annotations/`` (also one level down, as in ``VOCdevkit/VOC2012``)."""
    path = Path(path)
    if (path / "Annotations").is_dir():
        return path
    subs = [p for p in path.iterdir() if p.is_dir() and (p / "Annotations").is_dir()] if path.is_dir() else []
    return subs[0] if len(subs) == 1 else None


def has_split_xml(path: Path) -> bool:
    return any(
        (path / s).is_dir() and next((path / s).glob("*.xml"), None) is not None
        for s in ("train", "valid", "val", "test")
    )


def _class_file(root: Path) -> list[str] | None:
    for name in CLASS_FILES:
        f = root / name
        if f.is_file():
            return [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


class _Objects:
    """Objects of one XML file, parsed, or ``None`` when the file is broken (logged)."""

    @staticmethod
    def parse(
        xml: Path, log: ProblemLog
    ) -> tuple[str | None, tuple[int, int] | None, list[tuple[str, list[float], bool]]] | None:
        try:
            tree = ET.parse(xml)
        except ET.ParseError as exc:
            line = exc.position[0] if exc.position else None
            log.add(Kind.BAD_ANNOTATION_FILE, xml, f"malformed or truncated XML: {exc}", Action.SKIPPED_IMAGE, line)
            return None
        except OSError as exc:
            log.add(Kind.BAD_ANNOTATION_FILE, xml, f"cannot read: {exc}", Action.SKIPPED_IMAGE)
            return None
        root = tree.getroot()
        filename = root.findtext("filename")
        size = None
        w, h = root.findtext("size/width"), root.findtext("size/height")
        try:
            if w is not None and h is not None and int(float(w)) > 0 and int(float(h)) > 0:
                size = (int(float(w)), int(float(h)))
        except ValueError:
            size = None
        objects = []
        for k, obj in enumerate(root.iter("object"), 1):
            name = (obj.findtext("name") or "").strip()
            bnd = obj.find("bndbox")
            coords = [bnd.findtext(t) if bnd is not None else None for t in ("xmin", "ymin", "xmax", "ymax")]
            if not name or any(c is None for c in coords):
                log.add(
                    Kind.BAD_FIELDS,
                    xml,
                    f"object #{k} needs <name> and <bndbox> xmin/ymin/xmax/ymax",
                    Action.SKIPPED_IMAGE,
                )
                return None
            try:
                box = [float(c) for c in coords]  # type: ignore[arg-type]
            except ValueError:
                log.add(
                    Kind.NON_NUMERIC,
                    xml,
                    f"object #{k} ({name}): bndbox {coords} has a non-numeric value",
                    Action.SKIPPED_IMAGE,
                )
                return None
            if not all(np.isfinite(box)):
                log.add(Kind.NON_NUMERIC, xml, f"object #{k} ({name}): non-finite coordinate", Action.SKIPPED_IMAGE)
                return None
            difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
            objects.append((name, box, difficult))
        return filename, size, objects


def _find_image(folder: Path, xml: Path, filename: str | None) -> Path:
    if filename and (folder / filename).is_file():
        return folder / filename
    for suffix in IMAGE_SUFFIXES:
        cand = folder / (xml.stem + suffix)
        if cand.is_file():
            return cand
    return folder / (filename or xml.stem + ".jpg")


def read_voc(path: Path) -> Dataset:
    """A devkit (``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main``) or split folders of XML + images."""
    path = Path(path)
    root = find_voc_root(path)
    log = ProblemLog()
    groups: dict[str, list[tuple[Path, Path]]] = {}  # split -> [(xml, image folder)]
    if root is not None:
        ann, img_dir = root / "Annotations", root / "JPEGImages"
        img_dir = img_dir if img_dir.is_dir() else ann
        sets = root / "ImageSets" / "Main"
        for set_name, split in IMAGESET_SPLITS.items():
            f = sets / f"{set_name}.txt"
            if f.is_file():
                stems = [ln.split()[0] for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
                groups[split] = [(ann / f"{s}.xml", img_dir) for s in stems]
        if not groups:
            groups["train"] = [(x, img_dir) for x in sorted(ann.glob("*.xml"))]
        class_root = root
    elif path.is_dir() and has_split_xml(path):
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            split = SPLIT_ALIASES.get(sub.name.lower())
            if split and split not in groups:
                groups[split] = [(x, sub) for x in sorted(sub.glob("*.xml"))]
        class_root = path
    else:
        raise DatasetError(f"no Pascal VOC dataset at {path} (expected Annotations/ or split folders of .xml files)")

    return assemble_voc(groups, _find_image, class_root, log)


ImageFinder = Callable[[Path, Path, str | None], Path]  # (folder, xml, filename in the XML) -> image path


def assemble_voc(
    groups: dict[str, list[tuple[Path, Path]]], find: ImageFinder, class_root: Path, log: ProblemLog
) -> Dataset:
    """Parse every ``(xml, folder)`` of each split, locate its image with ``find`` and build the dataset."""
    parsed: dict[str, list[tuple[Path, Path, tuple | None]]] = {}
    for split, items in groups.items():
        out = []
        for xml, folder in items:
            if not xml.is_file():
                log.add(
                    Kind.BAD_ANNOTATION_FILE,
                    xml,
                    f"annotation file listed in the image set is missing: {xml}",
                    Action.SKIPPED_IMAGE,
                )
                continue
            p = _Objects.parse(xml, log)
            out.append((xml, find(folder, xml, p[0] if p else None), p))
        parsed[split] = out

    classes = _class_file(class_root)
    if classes is None:
        classes = sorted({o[0] for items in parsed.values() for *_, p in items if p for o in p[2]})
    index = {n: k for k, n in enumerate(classes)}
    splits = {s: _read_split(items, index, log) for s, items in parsed.items()}
    return Dataset(classes, {s: splits[s] for s in SPLITS if s in splits}, "voc", class_root, log)


def _read_split(
    items: list[tuple[Path, Path, tuple | None]], index: dict[str, int], log: ProblemLog
) -> list[ImageRecord]:
    paths, stated, sources = [], [], []
    broken = []
    for xml, image, p in items:
        paths.append(image)
        stated.append(p[1] if p else None)
        sources.append(str(xml))
        broken.append(p is None)
    skip = np.asarray(broken, dtype=bool)
    sizes = probe_images(paths, log, sources=sources, stated=stated)
    idx, boxes, cls, crowd, where = [], [], [], [], []
    for i, (xml, _, p) in enumerate(items):
        if p is None or sizes[i, 0] < 0:
            continue
        rows = []
        for k, (name, box, difficult) in enumerate(p[2], 1):
            if name not in index:
                log.add(
                    Kind.UNKNOWN_CATEGORY,
                    xml,
                    f"object #{k}: class {name!r} is not in the class list",
                    Action.SKIPPED_IMAGE,
                )
                skip[i] = True
                break
            rows.append((i, box, index[name], difficult, (f"{xml} object #{k}", None)))
        else:
            for r in rows:
                idx.append(r[0])
                boxes.append(r[1])
                cls.append(r[2])
                crowd.append(r[3])
                where.append(r[4])
    return build_records(
        paths,
        sizes,
        np.asarray(idx, dtype=np.int64),
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        np.asarray(cls, dtype=np.int64),
        np.asarray(crowd, dtype=bool),
        where.__getitem__,
        log,
        skip,
    )


def voc_xml(rec: ImageRecord, name: str, folder: str, classes: list[str]) -> str:
    objs = []
    for box, c, crowd in zip(rec.boxes, rec.class_ids, rec.iscrowd, strict=True):
        x1, y1, x2, y2 = (number(v) for v in box)
        objs.append(
            f"  <object>\n    <name>{escape(classes[c])}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>0</truncated>\n    <difficult>{int(crowd)}</difficult>\n    <occluded>0</occluded>\n"
            f"    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n"
            f"      <ymax>{y2}</ymax>\n    </bndbox>\n  </object>\n"
        )
    return (
        f"<annotation>\n  <folder>{escape(folder)}</folder>\n  <filename>{escape(name)}</filename>\n"
        f"  <size>\n    <width>{rec.width}</width>\n    <height>{rec.height}</height>\n"
        "    <depth>3</depth>\n  </size>\n"
        f"  <segmented>0</segmented>\n{''.join(objs)}</annotation>\n"
    )


def write_voc(ds: Dataset, dst: Path, transfer: Transfer = "copy") -> list[str]:
    """Canonical VOC layout plus ``classes.txt`` (VOC itself has no class list; order is kept)."""
    dst = prepare_output(dst)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True)
    taken: set[str] = set()  # one JPEGImages folder for all splits: stems unique across splits
    for split in SPLITS:
        if split not in ds.splits:
            continue
        records = ds.split_records(split)
        names = unique_names(records, taken)
        for rec, name in zip(records, names, strict=True):
            place_image(rec.path, dst / "JPEGImages" / name, transfer)
            (dst / "Annotations" / f"{Path(name).stem}.xml").write_text(
                voc_xml(rec, name, "JPEGImages", ds.classes), encoding="utf-8"
            )
        set_name = "val" if split == "valid" else split
        (dst / "ImageSets" / "Main" / f"{set_name}.txt").write_text(
            "".join(f"{Path(n).stem}\n" for n in names), encoding="utf-8"
        )
    (dst / "classes.txt").write_text("".join(f"{c}\n" for c in ds.classes), encoding="utf-8")
    return []
