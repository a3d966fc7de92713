"""YOLO TXT (Ultralytics / Roboflow YOLOv5-v11 export): ``data.yaml`` + ``images/`` and ``labels/``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from speedmap.data.build import IMAGE_SUFFIXES, build_records, probe_images, unique_class_names
from speedmap.data.dataset import SPLITS, Dataset, ImageRecord
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.data.writing import Transfer, place_image, prepare_output, unique_names
from speedmap.errors import DatasetError

YAML_KEYS = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}


def find_yaml(path: Path) -> Path | None:
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (path / name).is_file():
            return path / name
    for cand in sorted(path.glob("*.y*ml")):
        try:
            data = yaml.safe_load(cand.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "names" in data:
            return cand
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    if not text.strip():
        raise DatasetError(f"{path}: file is empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DatasetError(f"{where}: malformed or truncated YAML ({problem})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names' and 'train'/'val'/'test' paths")
    return data


def _names(data: dict[str, Any], path: Path, log: ProblemLog) -> list[str]:
    names = data.get("names")
    nc = data.get("nc")
    if isinstance(names, dict):
        try:
            keyed = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: 'names' keys must be class indices 0..N-1") from exc
        if sorted(keyed) != list(range(len(keyed))):
            raise DatasetError(f"{path}: 'names' keys must be 0..{len(keyed) - 1}, got {sorted(keyed)}")
        out = [keyed[k] for k in range(len(keyed))]
    elif isinstance(names, list):
        out = [str(n) for n in names]
    elif names is None and isinstance(nc, int):
        out = [f"class{k}" for k in range(nc)]
    else:
        raise DatasetError(f"{path}: 'names' must be a list or a mapping of class names")
    if nc is not None and nc != len(out):
        log.add(Kind.CLASS_LIST, path, f"nc is {nc} but {len(out)} names are given; using the names", Action.KEPT)
    return unique_class_names(out, path, log)


# folder names too common to say which dataset or split a folder is (a moved split is never found by one alone;
# a study names such a folder with its parent)
GENERIC_FOLDERS = {"images", "labels", "data", "dataset", "datasets", "export", "yolo", "coco", "voc"}


def _resolve(root: Path, entry: str) -> Path:
    p = Path(entry)
    if p.is_absolute():
        return p
    cand = root / p
    # Roboflow writes '../train/images' relative to the yaml's folder; Ultralytics retries without '../'.
    if not cand.exists() and entry.startswith("../"):
        cand = root / entry[3:]
    return cand


def relocate(entry: str, bases: list[Path]) -> Path | None:
    """A split path written on another machine (``/Users/me/ds/train``, ``C:\\data\\ds\\valid\\images``,
    Colab's ``/content/...``), found by its trailing components under one of ``bases`` (the data file's folder):
    the longest tail that exists, never a lone generic name such as ``images``; None if none does."""
    parts = [q for q in entry.replace("\\", "/").split("/") if q not in ("", ".", "..") and not q.endswith(":")]
    for k in range(len(parts)):
        tail = parts[k:]
        if len(tail) == 1 and tail[0].lower() in GENERIC_FOLDERS:
            break
        for base in bases:
            cand = base.joinpath(*tail)
            if cand.exists():
                return cand
    return None


def _split_images(root: Path, entries: Any, yaml_path: Path, split: str, log: ProblemLog) -> list[Path] | None:
    items = entries if isinstance(entries, list) else [entries]
    images: list[Path] = []
    for entry in items:
        where = _resolve(root, str(entry))
        if not where.exists() and (moved := relocate(str(entry), list(dict.fromkeys([root, yaml_path.parent])))):
            here = moved.relative_to(yaml_path.parent) if moved.is_relative_to(yaml_path.parent) else moved
            log.add(Kind.MOVED_SPLIT, yaml_path, f"{split}: {entry!r} not found; using {here}", Action.FOUND_BESIDE)
            where = moved
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif where.is_file() and where.suffix.lower() == ".txt":
            for line in where.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    q = Path(line.strip())
                    images.append(q if q.is_absolute() else (where.parent / q))
        elif where.is_file() and where.suffix.lower() in IMAGE_SUFFIXES:
            images.append(where)
        else:
            log.add(
                Kind.MISSING_SPLIT,
                yaml_path,
                f"{split}: path {entry!r} not found (looked at {where})",
                Action.SKIPPED_SPLIT,
            )
            return None
    return images


def label_path(image: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt`` (the last ``images`` folder is swapped)."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def _parse_labels(
    path: Path, nc: int, log: ProblemLog
) -> tuple[list[tuple[int, float, float, float, float]], list[int]] | None:
    """Rows ``(class, cx, cy, w, h)`` normalised and their line numbers; ``None`` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        log.add(Kind.BAD_ANNOTATION_FILE, path, f"cannot read label file: {exc}", Action.SKIPPED_IMAGE)
        return None
    rows, lines = [], []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            log.add(
                Kind.BAD_FIELDS,
                path,
                f"expected 5 fields 'class cx cy w h' (or a polygon), got {len(fields)}: {line.strip()!r}",
                Action.SKIPPED_IMAGE,
                n,
            )
            return None
        try:
            values = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            log.add(Kind.NON_NUMERIC, path, f"value {bad!r} is not a number", Action.SKIPPED_IMAGE, n)
            return None
        if not all(np.isfinite(values)):
            log.add(Kind.NON_NUMERIC, path, f"non-finite value in {line.strip()!r}", Action.SKIPPED_IMAGE, n)
            return None
        c = values[0]
        if c != int(c) or not 0 <= c < nc:
            log.add(Kind.CLASS_OUT_OF_RANGE, path, f"class id {fields[0]} not in 0..{nc - 1}", Action.SKIPPED_IMAGE, n)
            return None
        if len(values) == 5:
            _, cx, cy, w, h = values
        else:  # segmentation polygon: its bounding box
            xs, ys = values[1::2], values[2::2]
            cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
            w, h = max(xs) - min(xs), max(ys) - min(ys)
        rows.append((int(c), cx, cy, w, h))
        lines.append(n)
    return rows, lines


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def read_yolo(path: Path) -> Dataset:
    """A dataset described by a ``data.yaml`` (``path`` is the file or the folder holding it)."""
    yaml_path = find_yaml(Path(path))
    if yaml_path is None:
        raise DatasetError(f"no YOLO data.yaml found at {path}")
    log = ProblemLog()
    data = _load_yaml(yaml_path)
    classes = _names(data, yaml_path, log)
    root = yaml_path.parent
    if data.get("path"):
        root = _resolve(yaml_path.parent, str(data["path"]))
        if not root.is_dir():  # written on another machine (Colab's /content/...): the splits are read beside the file
            root = yaml_path.parent
    splits: dict[str, list[ImageRecord]] = {}
    for key, split in YAML_KEYS.items():
        if split in splits or not data.get(key):
            continue
        images = _split_images(root, data[key], yaml_path, split, log)
        if images is None:
            continue
        splits[split] = read_yolo_images(images, len(classes), log)
    if not splits:
        why = "; ".join(p.message for p in log.items if p.kind is Kind.MISSING_SPLIT)
        msg = f"{yaml_path}: no split found (set 'train', 'val' and/or 'test' to image folders)"
        raise DatasetError(f"{msg}: {why}" if why else msg)
    return Dataset(classes, {s: splits[s] for s in SPLITS if s in splits}, "yolo", yaml_path.parent, log)


def read_yolo_images(
    images: list[Path], nc: int | list[str], log: ProblemLog, labels: Callable[[Path], Path] = label_path
) -> list[ImageRecord]:
    """Records of ``images`` with the label file ``labels(image)`` of each (missing: a negative image)."""
    nc = nc if isinstance(nc, int) else len(nc)
    sizes = probe_images(images, log)
    skip = np.zeros(len(images), dtype=bool)
    idx, rows, where = [], [], []
    for i, img in enumerate(images):
        if sizes[i, 0] < 0:
            continue
        lp = labels(img)
        parsed = _parse_labels(lp, nc, log)
        if parsed is None:
            skip[i] = True
            continue
        for row, line in zip(*parsed, strict=True):
            idx.append(i)
            rows.append(row)
            where.append((str(lp), line))
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    image_index = np.asarray(idx, dtype=np.int64)
    w = sizes[image_index, 0].astype(np.float64)
    h = sizes[image_index, 1].astype(np.float64)
    cx, cy, bw, bh = arr[:, 1] * w, arr[:, 2] * h, arr[:, 3] * w, arr[:, 4] * h
    boxes = np.column_stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    # Negative width/height in a YOLO line is an inverted box: make it visible to the checks.
    neg = (arr[:, 3] < 0) | (arr[:, 4] < 0)
    boxes[neg] = np.column_stack([cx + np.abs(bw) / 2, cy + np.abs(bh) / 2, cx - np.abs(bw) / 2, cy - np.abs(bh) / 2])[
        neg
    ]
    crowd = np.zeros(len(idx), dtype=bool)
    return build_records(
        images, sizes, image_index, boxes, arr[:, 0].astype(np.int64), crowd, where.__getitem__, log, skip
    )


def write_yolo(ds: Dataset, dst: Path, transfer: Transfer = "copy") -> list[str]:
    """``dst/data.yaml`` + ``dst/{split}/images`` and ``labels`` (one label file per image)."""
    dst = prepare_output(dst)
    notes: list[str] = []
    yaml_splits: dict[str, str] = {}
    crowd_dropped = 0
    for split in SPLITS:
        if split not in ds.splits:
            continue
        records = ds.split_records(split)
        (dst / split / "images").mkdir(parents=True)
        (dst / split / "labels").mkdir(parents=True)
        for rec, name in zip(records, unique_names(records), strict=True):
            place_image(rec.path, dst / split / "images" / name, transfer)
            lines = []
            for box, c, crowd in zip(rec.boxes, rec.class_ids, rec.iscrowd, strict=True):
                if crowd:
                    crowd_dropped += 1
                    continue
                x1, y1, x2, y2 = box
                cx, cy = (x1 + x2) / 2 / rec.width, (y1 + y2) / 2 / rec.height
                bw, bh = (x2 - x1) / rec.width, (y2 - y1) / rec.height
                lines.append(f"{c} {cx:.8g} {cy:.8g} {bw:.8g} {bh:.8g}\n")
            (dst / split / "labels" / name).with_suffix(".txt").write_text("".join(lines), encoding="utf-8")
        yaml_splits["val" if split == "valid" else split] = f"{split}/images"
    data = {**yaml_splits, "nc": len(ds.classes), "names": list(ds.classes)}
    (dst / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if crowd_dropped:
        notes.append(f"YOLO has no crowd flag: {crowd_dropped} crowd region(s) were not written")
    return notes
