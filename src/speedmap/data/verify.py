"""Full-decode check: catches images whose header reads fine but whose data is truncated or corrupt."""

from __future__ import annotations

from collections.abc import Callable

from speedmap.data.dataset import SPLITS, Dataset
from speedmap.data.problems import Action, Kind
from speedmap.imageio import ImageReadError, read_image


def decode_all(ds: Dataset, progress: Callable[[int, int], None] | None = None) -> int:
    """Decode every image; corrupt ones are logged in ``ds.problems`` and removed. Returns how many."""
    total, done, bad = ds.num_images, 0, 0
    for split in SPLITS:
        kept = []
        for rec in ds.split_records(split):
            try:
                read_image(rec.path)
                kept.append(rec)
            except ImageReadError as exc:
                ds.problems.add(Kind.CORRUPT_IMAGE, rec.path, str(exc), Action.SKIPPED_IMAGE)
                bad += 1
            done += 1
            if progress is not None:
                progress(done, total)
        if split in ds.splits:
            ds.splits[split] = kept
    return bad
