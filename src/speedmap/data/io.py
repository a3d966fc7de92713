"""Format detection and the two entry points: :func:`load_dataset` and :func:`save_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from speedmap.data.coco import ROBOFLOW_FILE, find_annotation_files, read_coco, write_coco
from speedmap.data.dataset import FORMATS, Dataset
from speedmap.data.voc import find_voc_root, has_split_xml, read_voc, write_voc
from speedmap.data.writing import Transfer
from speedmap.data.yolo import find_yaml, read_yolo, write_yolo
from speedmap.errors import DatasetError

READERS: dict[str, Callable[[Path], Dataset]] = {"coco": read_coco, "yolo": read_yolo, "voc": read_voc}
WRITERS: dict[str, Callable[[Dataset, Path, Transfer], list[str]]] = {
    "coco": write_coco,
    "yolo": write_yolo,
    "voc": write_voc,
}


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
    if find_voc_root(path) is not None or has_split_xml(path):
        return "voc"
    if find_annotation_files(path):
        return "coco"
    raise DatasetError(
        f"no dataset found at {path}: expected COCO JSON ({ROBOFLOW_FILE} per split, or annotations/*.json), "
        "a YOLO data.yaml, or Pascal VOC (Annotations/ or split folders with .xml files)"
    )


def load_dataset(path: str | Path, format: str | None = None, strict: bool = False) -> Dataset:
    """Read a dataset in any supported format.

    Broken items are skipped and recorded in ``dataset.problems``; with ``strict`` any problem
    raises :class:`DatasetError` listing them all.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    ds = READERS[fmt](path)
    if strict and ds.problems:
        shown = "\n  ".join(str(p) for p in ds.problems.items[:50])
        more = f"\n  ... and {len(ds.problems) - 50} more" if len(ds.problems) > 50 else ""
        raise DatasetError(f"{len(ds.problems)} problem(s) in {path} (strict mode):\n  {shown}{more}")
    return ds


def save_dataset(ds: Dataset, dst: str | Path, format: str = "coco", transfer: Transfer = "copy") -> list[str]:
    """Write ``ds`` to a new folder in ``format``; returns notes on anything the format cannot hold."""
    if format not in WRITERS:
        raise DatasetError(f"unknown dataset format {format!r}; choose one of {', '.join(FORMATS)}")
    return WRITERS[format](ds, Path(dst), transfer)
