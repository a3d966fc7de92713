"""Format detection and the two entry points: :func:`load_dataset` and :func:`save_dataset`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from speedmap.data import splitting
from speedmap.data.coco import ROBOFLOW_FILE, find_annotation_files, read_coco, write_coco
from speedmap.data.dataset import FORMATS, Dataset
from speedmap.data.loose import Scan, has_voc_xml, has_yolo_labels, is_voc_xml, scan
from speedmap.data.verify import drop_undecodable
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
    found = scan(path)
    if has_voc_xml(found):
        return "voc"
    if has_yolo_labels(found):
        return "yolo"
    raise DatasetError(_nothing_found(path, found))


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


def load_dataset(
    path: str | Path,
    format: str | None = None,
    strict: bool = False,
    auto_split: bool = False,
    decode: Iterable[str] = (),
) -> Dataset:
    """Read a dataset in any supported format.

    Broken items are skipped and recorded in ``dataset.problems``; with ``strict`` any problem
    raises :class:`DatasetError` listing them all. ``auto_split``: a dataset without ``valid`` or ``test``
    gets them carved from ``train`` (seeded, 70/15/15, :func:`speedmap.data.splitting.auto_split`), as
    training, evaluation, export and the study see it. ``decode``: the splits whose images are decoded in
    full (once per process), the records of those that do not decode skipped and logged
    (:func:`speedmap.data.verify.drop_undecodable`): what every command that reads the pixels asks for.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"dataset path not found: {path}")
    ds = READERS[fmt](path)
    if auto_split:
        ds = splitting.auto_split(ds)
    if decode:
        drop_undecodable(ds, decode)
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
