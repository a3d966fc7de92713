"""The two entry points: :func:`load_dataset` (layout found by :mod:`speedmap.data.layout`) and :func:`save_dataset`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from speedmap.data import splitting
from speedmap.data.coco import write_coco
from speedmap.data.dataset import FORMATS, Dataset
from speedmap.data.layout import detect_format, read_layout
from speedmap.data.verify import drop_undecodable
from speedmap.data.voc import write_voc
from speedmap.data.writing import Transfer
from speedmap.data.yolo import write_yolo
from speedmap.errors import DatasetError

__all__ = ["detect_format", "load_dataset", "save_dataset"]

WRITERS: dict[str, Callable[[Dataset, Path, Transfer], list[str]]] = {
    "coco": write_coco,
    "yolo": write_yolo,
    "voc": write_voc,
}


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
    ds = read_layout(path, format or detect_format(path))
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
