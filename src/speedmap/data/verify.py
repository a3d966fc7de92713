"""Full-decode check: catches images whose header reads fine but whose data is truncated or corrupt.

Reading a dataset looks at image headers only. Every command that reads the pixels (training, the
training-speed probe, int8 calibration, evaluation, the study) asks :func:`speedmap.data.load_dataset` to
drop the records of the splits it reads whose image does not decode (``decode=``): after the automatic
split, so a skipped image changes no other image's split, and each split holds the same records whichever
command reads it. Each skipped image is logged in ``ds.problems`` (corrupt image, image skipped), which
the commands print by name. A verdict is kept for the process per file (path, size, modification time),
so the study's probe, trainings, calibration and scoring decode each image for it once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speedmap.data.dataset import SPLITS, Dataset
from speedmap.data.problems import Action, Kind, Problem
from speedmap.imageio import ImageReadError, read_image

# Images decoded at once: the decoders release the GIL; each thread holds one decoded image.
MAX_THREADS = 4

_verdicts: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime) -> why it does not decode


def decode_error(path: str | Path) -> str | None:
    """Why the image at ``path`` does not decode (:func:`read_image`'s message), or ``None`` when it does."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns) if st is not None else None
    if key is not None and key in _verdicts:
        return _verdicts[key]
    try:
        read_image(path)
        verdict = None
    except ImageReadError as exc:
        verdict = str(exc).removeprefix(f"{path}: ")
    if key is not None:
        _verdicts[key] = verdict
    return verdict


def _threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def drop_undecodable(
    ds: Dataset, splits: Iterable[str] = SPLITS, progress: Callable[[int, int], None] | None = None
) -> list[Problem]:
    """Decode every image of ``splits``; the records of those that do not decode are removed from ``ds``
    and logged in ``ds.problems``. Returns the problems logged."""
    names = [s for s in dict.fromkeys(splits) if s in ds.splits]
    todo = [rec for s in names for rec in ds.splits[s]]
    bad: dict[int, str] = {}
    with ThreadPoolExecutor(_threads()) as pool:
        for done, (rec, why) in enumerate(zip(todo, pool.map(decode_error, [r.path for r in todo]), strict=True), 1):
            if why is not None:
                bad[id(rec)] = why
            if progress is not None:
                progress(done, len(todo))
    found: list[Problem] = []
    if bad:
        ds.read_fingerprint = ds.fingerprint()
    for s in names:
        for rec in ds.splits[s]:
            if id(rec) in bad:
                kind = Kind.CORRUPT_IMAGE if rec.path.exists() else Kind.MISSING_IMAGE
                ds.problems.add(kind, rec.path, bad[id(rec)], Action.SKIPPED_IMAGE)
                found.append(ds.problems.items[-1])
        ds.splits[s] = [rec for rec in ds.splits[s] if id(rec) not in bad]
    return found


def decode_all(ds: Dataset, progress: Callable[[int, int], None] | None = None) -> int:
    """Decode every image; corrupt ones are logged in ``ds.problems`` and removed. Returns how many."""
    return len(drop_undecodable(ds, SPLITS, progress))
