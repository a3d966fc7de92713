"""Shared by every reader: probe image headers, sanitize boxes, assemble :class:`ImageRecord` lists.

Rules (the same for every format):
- an image that is missing or unreadable is skipped;
- an image whose labels cannot be read (malformed line, unknown class) is skipped: keeping it with
  a label missing would teach the detector that a real object is background;
- a readable but geometrically bad box is fixed or dropped on its own: inverted and zero-area boxes
  are dropped, boxes crossing the border are clipped (dropped when nothing is left inside), exact
  duplicates (same class, same corners within 0.01 px) keep one copy.
Every such event is logged with file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from speedmap.data.dataset import ImageRecord
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.imageio import ImageReadError, image_size

# Coordinates within this many pixels outside the image are float noise, clipped silently.
IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
EDGE_TOLERANCE = 0.01
DUPLICATE_TOLERANCE = 0.01

Locator = Callable[[int], tuple[str, int | None]]
Describe = Callable[[int], str]  # box number -> message
Report = Callable[[np.ndarray, Kind, Action, Describe], None]  # log each box in a mask


def unique_class_names(names: list[str], source: object, log: ProblemLog) -> list[str]:
    """Class names made unique (``name``, ``name#2``, ...); each rename is logged."""
    out: list[str] = []
    for k, name in enumerate(names):
        new, n = name, 2
        while new in out:
            new, n = f"{name}#{n}", n + 1
        if new != name:
            log.add(Kind.CLASS_LIST, source, f"class {k} repeats the name {name!r}; called {new!r} here", Action.KEPT)
        out.append(new)
    return out


def probe_images(
    paths: Sequence[Path],
    log: ProblemLog,
    sources: Sequence[str] | None = None,
    stated: Sequence[tuple[int, int] | None] | None = None,
) -> np.ndarray:
    """Read ``(width, height)`` of each image from its header; ``(-1, -1)`` marks a skipped image.

    ``stated`` are sizes claimed by the annotation file; a mismatch is logged and the file wins.
    """
    sizes = np.full((len(paths), 2), -1, dtype=np.int64)
    for i, path in enumerate(paths):
        where = sources[i] if sources is not None else str(path)
        try:
            w, h = image_size(path)
        except ImageReadError as exc:
            if not path.exists():
                log.add(Kind.MISSING_IMAGE, where, f"image file not found: {path}", Action.SKIPPED_IMAGE)
            else:
                log.add(Kind.CORRUPT_IMAGE, path, str(exc), Action.SKIPPED_IMAGE)
            continue
        sizes[i] = (w, h)
        claim = stated[i] if stated is not None else None
        if claim is not None and tuple(claim) != (w, h):
            hint = " (the file is EXIF-rotated; boxes are taken as given)" if tuple(claim) == (h, w) else ""
            log.add(
                Kind.SIZE_MISMATCH,
                where,
                f"{path.name}: annotation says {claim[0]}x{claim[1]}, file is {w}x{h}{hint}",
                Action.USED_FILE_SIZE,
            )
    return sizes


def build_records(
    paths: Sequence[Path],
    sizes: np.ndarray,
    image_index: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    iscrowd: np.ndarray,
    locate: Locator,
    log: ProblemLog,
    skip: np.ndarray | None = None,
) -> list[ImageRecord]:
    """Sanitize all boxes of a split at once (vectorised) and group them per image.

    ``image_index[k]`` says which image box ``k`` belongs to; ``locate(k)`` gives its file and line
    for messages; ``skip`` marks images already found broken; images with ``sizes == -1`` are skipped.
    """
    keep_image = sizes[:, 0] > 0
    if skip is not None:
        keep_image &= ~skip
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    image_index = np.asarray(image_index, dtype=np.int64)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    iscrowd = np.asarray(iscrowd, dtype=bool)

    report = partial(_report, locate, log)
    keep = keep_image[image_index]
    keep = _drop_degenerate(boxes, keep, report)
    keep = _clip_to_images(boxes, sizes, image_index, keep, report)
    keep = _drop_duplicates(boxes, image_index, class_ids, keep, report)
    return _group_per_image(paths, sizes, keep_image, image_index, keep, boxes, class_ids, iscrowd)


def _report(locate: Locator, log: ProblemLog, mask: np.ndarray, kind: Kind, action: Action, describe: Describe) -> None:
    """Log one problem per box in ``mask``, at the box's file and line."""
    for k in np.flatnonzero(mask):
        file, line = locate(int(k))
        log.add(kind, file, describe(int(k)), action, line)


def _box_text(boxes: np.ndarray, k: int) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in boxes[k]) + "]"


def _drop_degenerate(boxes: np.ndarray, keep: np.ndarray, report: Report) -> np.ndarray:
    """``keep`` without inverted boxes (max < min), then without zero-area ones; each logged."""
    x1, y1, x2, y2 = boxes.T
    inverted = keep & ((x2 < x1) | (y2 < y1))
    report(inverted, Kind.INVERTED_BOX, Action.SKIPPED_BOX, lambda k: f"box xyxy {_box_text(boxes, k)} has max < min")
    keep = keep & ~inverted
    zero = keep & ((x2 == x1) | (y2 == y1))
    report(zero, Kind.ZERO_AREA_BOX, Action.SKIPPED_BOX, lambda k: f"box xyxy {_box_text(boxes, k)} has zero area")
    return keep & ~zero


def _clip_to_images(
    boxes: np.ndarray, sizes: np.ndarray, image_index: np.ndarray, keep: np.ndarray, report: Report
) -> np.ndarray:
    """Clip every box to its image, in place; a kept box that crossed the border is logged as clipped, or
    dropped from ``keep`` when nothing of it is left inside."""
    x1, y1, x2, y2 = boxes.T
    w = sizes[image_index, 0].astype(np.float64)
    h = sizes[image_index, 1].astype(np.float64)
    tol = EDGE_TOLERANCE
    outside = keep & ((x1 < -tol) | (y1 < -tol) | (x2 > w + tol) | (y2 > h + tol))
    original = boxes.copy()
    boxes[:, 0] = np.clip(x1, 0, w)
    boxes[:, 1] = np.clip(y1, 0, h)
    boxes[:, 2] = np.clip(x2, 0, w)
    boxes[:, 3] = np.clip(y2, 0, h)
    x1, y1, x2, y2 = boxes.T
    nothing_left = outside & ((x2 <= x1) | (y2 <= y1))
    clipped = outside & ~nothing_left

    def outside_msg(k: int) -> str:
        o = ", ".join(f"{v:.2f}" for v in original[k])
        return f"box xyxy [{o}] crosses the {int(w[k])}x{int(h[k])} image"

    report(clipped, Kind.BOX_OUTSIDE, Action.CLIPPED_BOX, outside_msg)
    report(nothing_left, Kind.BOX_OUTSIDE, Action.SKIPPED_BOX, lambda k: outside_msg(k) + ", nothing inside")
    return keep & ~nothing_left


def _drop_duplicates(
    boxes: np.ndarray, image_index: np.ndarray, class_ids: np.ndarray, keep: np.ndarray, report: Report
) -> np.ndarray:
    """``keep`` without repeats: same image, class and corners (rounded); the first occurrence stays."""
    idx = np.flatnonzero(keep)
    if len(idx) <= 1:
        return keep
    key = np.round(boxes[idx] / DUPLICATE_TOLERANCE).astype(np.int64)
    table = np.column_stack([image_index[idx], class_ids[idx], key])
    _, first = np.unique(table, axis=0, return_index=True)
    dup = np.ones(len(idx), dtype=bool)
    dup[first] = False
    dup_mask = np.zeros(len(keep), dtype=bool)
    dup_mask[idx[dup]] = True
    report(
        dup_mask,
        Kind.DUPLICATE_BOX,
        Action.SKIPPED_BOX,
        lambda k: f"box xyxy {_box_text(boxes, k)} repeats an earlier box",
    )
    return keep & ~dup_mask


def _group_per_image(
    paths: Sequence[Path],
    sizes: np.ndarray,
    keep_image: np.ndarray,
    image_index: np.ndarray,
    keep: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    iscrowd: np.ndarray,
) -> list[ImageRecord]:
    """One record per kept image, with its kept boxes in their original order."""
    sel = np.flatnonzero(keep)
    order = sel[np.argsort(image_index[sel], kind="stable")]
    counts = np.bincount(image_index[order], minlength=len(paths))
    starts = np.concatenate([[0], np.cumsum(counts)])
    kb, kc, kz = boxes[order], class_ids[order], iscrowd[order]
    records: list[ImageRecord] = []
    for i in np.flatnonzero(keep_image):
        a, b = starts[i], starts[i + 1]
        records.append(ImageRecord(paths[i], int(sizes[i, 0]), int(sizes[i, 1]), kb[a:b], kc[a:b], kz[a:b]))
    return records
