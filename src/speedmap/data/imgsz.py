"""The training input size, chosen from the dataset: the smallest size at which its small objects stay
learnable, capped at the images' own size (upscaling adds pixels, not detail). With a time budget the study
then takes the largest size up to :data:`GROWTH` times that floor at which both sizes' full schedule still
fits (:func:`largest_that_fits`): box size is not all that matters, localisation and small print that tells
classes apart need pixels too (a single-class set of large objects: 128 px, the floor, scored 0.271 test
mAP50-95, 256 px 0.363).

The letterbox scales an image's long side to the input size, so an object's short side ``b`` on an image
whose long side is ``L`` is ``b * S / L`` pixels at input size ``S``. The rule asks that the small end of
the training boxes (the :data:`QUANTILE` of short sides, relative to their image's long side) reach
:data:`SMALL_OBJECT_PX` pixels: the stride-8 level's cell. Measured on three real datasets and the
built-in tasks (``benchmarks/bench_imgsz.py``, BENCHMARKS.md "Input size from the data").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from speedmap.data.dataset import Dataset, ImageRecord

SMALL_OBJECT_PX = 8.0  # the small end of the boxes is at least one stride-8 cell at the chosen size
QUANTILE = 0.10  # "the small end": the 10th percentile of box short sides, so a few specks do not set it
MIN_IMGSZ, MAX_IMGSZ = 128, 640  # below 128 px an epoch is no faster on a CPU; above 640 a study takes hours
STRIDE = 32
MIN_CLASS_BOXES = 5  # a class with fewer boxes does not set the size on its own
GROWTH = 2.0  # with a budget, the study grows the input size up to this multiple of the box rule's floor
TIME_EXPONENT = 1.7  # an epoch's time against input size on real photos: size^1.5 (Fast) to size^1.7 (Accurate)


def _round_up(v: float) -> int:
    return int(math.ceil(v / STRIDE) * STRIDE)


def _small_end(recs: list[ImageRecord], longs: np.ndarray, nc: int) -> float | None:
    """The smallest per-class :data:`QUANTILE` of box short sides over image long sides: a rare small class
    (BCCD's platelets among red cells) sets it rather than drowning in a common large one."""
    sides = [
        np.minimum(r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1]) / lo
        for r, lo in zip(recs, longs, strict=True)
    ]
    s = np.concatenate(sides) if sides else np.zeros(0)
    c = np.concatenate([r.class_ids for r in recs]) if recs else np.zeros(0, np.int64)
    s, c = s[s > 0], c[s > 0]
    ends = [float(np.quantile(s[c == k], QUANTILE)) for k in range(nc) if np.sum(c == k) >= MIN_CLASS_BOXES]
    if not ends and len(s):
        ends = [float(np.quantile(s, QUANTILE))]
    return min(ends) if ends else None


def choose_imgsz(ds: Dataset) -> tuple[int, str]:
    """``(input size, the reason in one sentence)`` for training on ``ds`` (its train split)."""
    recs = ds.split_records("train") or [r for _, r in ds.all_records()]
    if not recs:
        return MIN_IMGSZ, "the dataset has no images"
    longs = np.array([max(r.width, r.height) for r in recs], dtype=np.float64)
    native = float(np.median(longs))
    cap = max(MIN_IMGSZ, min(MAX_IMGSZ, int(native // STRIDE) * STRIDE))
    small = _small_end(recs, longs, len(ds.classes))
    if small is None:
        return min(cap, 320), "the training split has no boxes: a middle size, capped at the images' own"
    need = _round_up(SMALL_OBJECT_PX / small)
    size = min(max(need, MIN_IMGSZ), cap)
    who = "the" if len(ds.classes) == 1 else "a class's"
    where = f"the smallest 10% of {who} boxes are {small * native:.0f} px or less on {native:.0f}-px images"
    if need > cap:
        most = ", the most a study takes" if cap == MAX_IMGSZ else ""
        return size, (
            f"{where}; they would need {need} px to reach {SMALL_OBJECT_PX:.0f} px, so {cap} px"
            f" (the images' own size{most}) is used"
        )
    if need < MIN_IMGSZ:
        return size, f"{where}: the objects are large, so the smallest size ({MIN_IMGSZ} px) keeps them"
    return size, (
        f"{where}; at {size} px they are {small * size:.0f} px, at least the {SMALL_OBJECT_PX:.0f} px"
        " that keeps small objects learnable"
    )


def images_cap(ds: Dataset) -> int:
    """The largest input size worth training at: the images' own (median long side), within the bounds."""
    recs = ds.split_records("train") or [r for _, r in ds.all_records()]
    if not recs:
        return MIN_IMGSZ
    native = float(np.median([max(r.width, r.height) for r in recs]))
    return max(MIN_IMGSZ, min(MAX_IMGSZ, int(native // STRIDE) * STRIDE))


def largest_that_fits(floor: int, cap: int, fits: Callable[[int], bool]) -> int:
    """The largest multiple of :data:`STRIDE` from ``floor`` up to ``min(cap, GROWTH * floor)`` for which
    ``fits(size)`` holds (``floor`` when none above it does)."""
    top = min(cap, int(GROWTH * floor) // STRIDE * STRIDE)
    return next((s for s in range(top, floor, -STRIDE) if fits(s)), floor)


def speed_at(ips: dict[str, float], measured_at: int, size: int) -> dict[str, float]:
    """Training images/s at ``size`` from speeds measured at ``measured_at`` (time ~ size^TIME_EXPONENT)."""
    f = (measured_at / size) ** TIME_EXPONENT
    return {k: v * f for k, v in ips.items()}
