"""What a dataset folder is: the one place that decides the format and layout, then hands the path to the
reader of that layout. Each reader parses what it is handed and knows nothing of the others.

Looked for in this order: a YOLO ``data.yaml``; a Pascal VOC devkit (``Annotations/``) or Roboflow's VOC
export (XML beside the images in split folders); COCO JSON (Roboflow's per-split file, ``annotations/*.json``
or one ``.json`` beside the images); then, by what the files hold, Pascal VOC XML in any folder (LabelImg) or
YOLO ``.txt`` labels named like the images (:mod:`speedmap.data.loose`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from speedmap.data.coco import ROBOFLOW_FILE, find_annotation_files, read_coco
from speedmap.data.dataset import FORMATS, Dataset
from speedmap.data.loose import read_loose_voc, read_loose_yolo
from speedmap.data.scan import Scan, has_voc_xml, has_yolo_labels, is_voc_xml, scan
from speedmap.data.voc import find_voc_root, has_split_xml, read_voc
from speedmap.data.yolo import find_yaml, read_yolo
from speedmap.errors import DatasetError


def detect_format(path: Path) -> str:
    """``coco``, ``yolo`` or ``voc`` for a dataset file or folder; raises a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".yaml", ".yml"):
            return "yolo"
        raise DatasetError(f"{path}: not a dataset file (expected a COCO .json, a YOLO data.yaml or a folder)")
    if find_yaml(path) is not None:
        return "yolo"
    if _structured_voc(path):
        return "voc"
    if find_annotation_files(path):
        return "coco"
    found = scan(path)
    if has_voc_xml(found):
        return "voc"
    if has_yolo_labels(found):
        return "yolo"
    raise DatasetError(_nothing_found(path, found))


def read_layout(path: Path, fmt: str) -> Dataset:
    """The dataset at ``path`` read as ``fmt``, by the reader of the layout found there."""
    readers: dict[str, Callable[[Path], Dataset]] = {"coco": read_coco, "yolo": _yolo, "voc": _voc}
    if fmt not in readers:
        raise DatasetError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    return readers[fmt](path)


def _structured_voc(path: Path) -> bool:
    return find_voc_root(path) is not None or has_split_xml(path)


def _voc(path: Path) -> Dataset:
    if path.is_dir() and not _structured_voc(path):
        return read_loose_voc(scan(path))  # XML in any folder, images found by name
    return read_voc(path)


def _yolo(path: Path) -> Dataset:
    if path.is_dir() and find_yaml(path) is None:
        return read_loose_yolo(scan(path))  # images/ + labels/ + classes.txt, or flat, without data.yaml
    return read_yolo(path)


def _nothing_found(path: Path, found: Scan) -> str:
    hint = ""
    if any(not is_voc_xml(x) for x in found.xml[:5]):
        hint = (
            " The .xml files are not Pascal VOC (<annotation> per image); CVAT's own XML is not read: export"
            " from CVAT as 'COCO 1.0' or 'Pascal VOC 1.1' instead."
        )
    elif found.images and not (found.xml or found.txt or found.json):
        hint = " The images have no label files: export the labels from your labelling tool next to them."
    return (
        f"no dataset found at {path}: looked for COCO JSON ({ROBOFLOW_FILE} per split, annotations/*.json, or one"
        " .json beside the images), a YOLO data.yaml or YOLO .txt labels named like the images (in labels/ or"
        " beside them, classes in classes.txt), and Pascal VOC XML (Annotations/ + JPEGImages/, or .xml files in any"
        f" folder); found {found.summary()}.{hint}"
    )
