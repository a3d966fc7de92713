"""Helpers shared by the format writers: output folders, unique file names, image transfer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from speedmap.data.dataset import ImageRecord
from speedmap.errors import DatasetError

Transfer = Literal["copy", "link", "move"]


def check_output(dst: Path) -> None:
    """Refuse a destination that exists and is not an empty folder (nothing already there is lost)."""
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(f"output folder {dst} exists and is not empty; choose a new folder")


def prepare_output(dst: Path) -> Path:
    """Create ``dst`` after :func:`check_output`."""
    dst = Path(dst)
    check_output(dst)
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def unique_names(records: Iterable[ImageRecord], taken: set[str] | None = None) -> list[str]:
    """A file name per record whose stem is unique (case-insensitively) among them and ``taken``.

    Unique stems matter: YOLO pairs ``x.jpg`` with ``x.txt`` and VOC with ``x.xml``.
    """
    seen = taken if taken is not None else set()
    names = []
    for rec in records:
        stem, suffix = rec.path.stem, rec.path.suffix.lower() or ".jpg"
        candidate, k = stem, 1
        while candidate.lower() in seen:
            candidate, k = f"{stem}_{k}", k + 1
        seen.add(candidate.lower())
        names.append(candidate + suffix)
    return names


def place_image(src: Path, dst: Path, mode: Transfer = "copy") -> None:
    """Put an image file at ``dst`` by copying, hard-linking (falls back to copy) or moving."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "move":
        shutil.move(src, dst)
        return
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def number(v: float) -> str:
    """Compact text for a coordinate: integers stay integers, others keep 1e-4 px precision."""
    r = round(float(v), 4)
    return str(int(r)) if r == int(r) else f"{r:.4f}".rstrip("0")
