"""Seeded, reproducible splits for datasets that come unsplit, or without ``valid`` or ``test``.

Most datasets that users label themselves have one folder of images. Training needs a validation split
(early stopping) and the study a test split (the verdict), so the missing ones are carved out of
``train``: shuffled by a seed, stratified so that every class with at least :data:`MIN_CLASS_IMAGES`
images has one in each carved split, and the same seed gives the same split on every machine.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from speedmap.data.dataset import SPLITS, Dataset, ImageRecord, SplitInfo
from speedmap.errors import DatasetError

DEFAULT_RATIOS = (0.70, 0.15, 0.15)
MIN_CLASS_IMAGES = 3  # a class in fewer images keeps them in train: one image cannot serve three splits
MIN_SPLIT_IMAGES = 10  # below this many images there is nothing to split: the dataset is left as it is


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"70,15,15"`` or ``"0.7,0.15,0.15"`` -> fractions summing to 1; a clear error otherwise."""
    try:
        parts = [float(p) for p in text.replace("/", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(not np.isfinite(p) or p < 0 for p in parts) or sum(parts) <= 0:
        raise DatasetError(f"--ratios takes three non-negative numbers train,valid,test such as 70,15,15; got {text!r}")
    if parts[0] <= 0 or parts[1] <= 0 or parts[2] <= 0:
        raise DatasetError(f"--ratios: train, valid and test each need a share above 0; got {text!r}")
    total = sum(parts)
    return (parts[0] / total, parts[1] / total, parts[2] / total)


def needs_split(ds: Dataset) -> bool:
    return bool(ds.split_records("train")) and not (ds.split_records("valid") and ds.split_records("test"))


def auto_split(
    ds: Dataset, ratios: tuple[float, float, float] = DEFAULT_RATIOS, seed: int = 0, pool_all: bool = False
) -> Dataset:
    """``ds`` with its missing ``valid``/``test`` carved from ``train`` (``pool_all``: every split redone).

    Existing splits are kept: a carved split gets ``ratio x all images``, taken from train. The dataset is
    returned unchanged (``split_info.source == "dataset"``) when it has both, or too few images to split.
    """
    if pool_all:
        pool = [rec for _, rec in ds.all_records()]
        keep: dict[str, list[ImageRecord]] = {}
        missing = ["valid", "test"]
    else:
        if not needs_split(ds):
            return ds
        pool = list(ds.split_records("train"))
        keep = {s: list(ds.split_records(s)) for s in ("valid", "test") if ds.split_records(s)}
        missing = [s for s in ("valid", "test") if s not in keep]
    total = len(pool) + sum(len(v) for v in keep.values())
    if len(pool) < MIN_SPLIT_IMAGES:
        return ds
    want = {s: max(1, round(total * ratios[SPLITS.index(s)])) for s in missing}
    chosen = _choose(pool, len(ds.classes), want, seed)
    splits: dict[str, list[ImageRecord]] = {"train": [r for i, r in enumerate(pool) if i not in chosen]}
    for s in ("valid", "test"):
        splits[s] = keep.get(s) or [r for i, r in enumerate(pool) if chosen.get(i) == s]
    info = SplitInfo("automatic", seed, tuple(round(r, 4) for r in ratios), tuple(missing))  # type: ignore[arg-type]
    return replace(ds, splits=splits, split_info=info, read_fingerprint=None)


def _choose(pool: list[ImageRecord], nc: int, want: dict[str, int], seed: int) -> dict[int, str]:
    """Image index -> carved split: first one image of each class (rarest first) per split, then the rest
    in the seeded order until each split has its share."""
    order = np.random.default_rng(seed).permutation(len(pool))
    has = [set(pool[i].class_ids.tolist()) for i in range(len(pool))]
    counts = np.zeros(nc, dtype=np.int64)
    for h in has:
        counts[list(h)] += 1
    chosen: dict[int, str] = {}
    filled = dict.fromkeys(want, 0)
    for c in sorted(range(nc), key=lambda c: (counts[c], c)):
        if counts[c] < MIN_CLASS_IMAGES:
            continue
        for s in want:
            if filled[s] >= want[s] or any(chosen.get(i) == s and c in has[i] for i in chosen):
                continue
            pick = next((int(i) for i in order if int(i) not in chosen and c in has[int(i)]), None)
            if pick is not None:
                chosen[pick] = s
                filled[s] += 1
    for s in want:
        for i in order:
            if filled[s] >= want[s]:
                break
            if int(i) not in chosen:
                chosen[int(i)] = s
                filled[s] += 1
    return chosen
