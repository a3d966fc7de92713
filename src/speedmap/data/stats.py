"""Dataset statistics for ``speedmap datasets info``."""

from __future__ import annotations

from typing import Any

import numpy as np

from speedmap.data.dataset import SPLITS, Dataset, ImageRecord

# COCO area bands: small < 32^2 <= medium < 96^2 <= large.
SMALL, MEDIUM = 32**2, 96**2


def split_stats(records: list[ImageRecord], classes: list[str]) -> dict[str, Any]:
    nboxes = sum(r.num_boxes for r in records)
    cls = np.concatenate([r.class_ids for r in records]) if nboxes else np.zeros(0, dtype=np.int64)
    boxes = np.concatenate([r.boxes for r in records]) if nboxes else np.zeros((0, 4))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    per_class = np.bincount(cls, minlength=len(classes))
    return {
        "images": len(records),
        "boxes": int(nboxes),
        "negatives": sum(1 for r in records if r.num_boxes == 0),
        "per_class": {name: int(per_class[k]) for k, name in enumerate(classes)},
        "sizes": {
            "small": int(np.sum(area < SMALL)),
            "medium": int(np.sum((area >= SMALL) & (area < MEDIUM))),
            "large": int(np.sum(area >= MEDIUM)),
        },
    }


def dataset_info(ds: Dataset) -> dict[str, Any]:
    """The ``datasets info --json`` document; every split key is present (empty splits give zeros)."""
    return {
        "format": ds.format,
        "classes": list(ds.classes),
        "splits": {s: split_stats(ds.split_records(s), ds.classes) for s in SPLITS},
        "split": ds.split_info.to_json(),
    }
