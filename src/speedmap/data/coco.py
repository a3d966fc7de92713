"""COCO JSON: a single annotation file plus images, standard ``annotations/`` layout, or Roboflow's
``{train,valid,test}/_annotations.coco.json`` export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speedmap.data.build import build_records, probe_images, unique_class_names
from speedmap.data.dataset import SPLITS, Dataset, ImageRecord
from speedmap.data.problems import Action, Kind, ProblemLog
from speedmap.data.writing import Transfer, number, place_image, prepare_output, unique_names
from speedmap.errors import DatasetError
from speedmap.jsonfile import JsonFileError, read_json

ROBOFLOW_FILE = "_annotations.coco.json"
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}


def split_from_name(name: str, default: str = "train") -> str:
    """Guess a split from a file or folder name: ``instances_val2017`` -> ``valid``."""
    low = name.lower()
    for key in ("validation", "valid", "val", "test", "train"):
        if key in low:
            return SPLIT_ALIASES[key]
    return default


def find_annotation_files(path: Path) -> list[tuple[str, Path]]:
    """``(split, json)`` pairs for a COCO dataset at ``path`` (a file or a folder)."""
    path = Path(path)
    if path.is_file():
        return [(split_from_name(path.stem), path)]
    found: list[tuple[str, Path]] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if (sub / ROBOFLOW_FILE).is_file() and sub.name.lower() in SPLIT_ALIASES:
            found.append((SPLIT_ALIASES[sub.name.lower()], sub / ROBOFLOW_FILE))
    if not found and (path / ROBOFLOW_FILE).is_file():
        found.append((split_from_name(path.name), path / ROBOFLOW_FILE))
    if not found:
        for folder in (path / "annotations", path):
            files = sorted(folder.glob("*.json")) if folder.is_dir() else []
            files = [f for f in files if not f.name.startswith(".")]
            if files:
                found = [(split_from_name(f.stem), f) for f in files]
                break
    return found


def _image_dir(json_path: Path, file_names: list[str]) -> Path:
    """Where ``file_name`` entries resolve: beside the JSON, in ``images/``, or a split folder."""
    parent = json_path.parent
    root = parent.parent if parent.name == "annotations" else parent
    stem = json_path.stem.removeprefix("instances_").removeprefix("image_info_")
    candidates = [parent, parent / "images", root / stem, root / "images" / stem, root / "images", root]
    probe = file_names[: min(5, len(file_names))]
    for cand in candidates:
        if probe and all((cand / f).is_file() for f in probe):
            return cand
    for cand in candidates:
        if probe and any((cand / f).is_file() for f in probe):
            return cand
    return parent


def _resolve_image(folder: Path, file_name: str) -> Path:
    """``folder/file_name``; where that is missing, the same base name in ``folder`` or its ``images/``
    (Label Studio and CVAT write paths of the author's machine, or with Windows separators)."""
    direct = folder / file_name
    if direct.is_file():
        return direct
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    for cand in (folder / base, folder / "images" / base):
        if base and cand.is_file():
            return cand
    return direct


def load_json(path: Path, log: ProblemLog) -> Any | None:
    """Parse a JSON file; an unreadable, empty or truncated file is logged (with line) and gives ``None``."""
    try:
        return read_json(path)
    except JsonFileError as exc:
        log.add(Kind.BAD_ANNOTATION_FILE, path, str(exc), Action.SKIPPED_SPLIT, exc.line)
        return None


@dataclass
class _Parsed:
    split: str
    path: Path
    data: dict[str, Any]


def _is_id(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _key(v: object) -> object:
    """An id usable as a dict key (COCO ids are ints, sometimes strings); ``None`` otherwise."""
    return v if isinstance(v, int | str | float) and not isinstance(v, bool) else None


def short_repr(v: object, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def real_categories(docs: list[tuple[Path, dict[str, Any]]]) -> tuple[list[int], list[str]]:
    """Ids and names of the real categories of COCO documents, sorted by id.

    Roboflow's unused project category (id 0, the others' supercategory) is left out; the dataset
    layer and evaluation share this rule.
    """
    names: dict[int, str] = {}
    parents: dict[str, set[int]] = {}  # supercategory name -> ids of the categories under it
    used: set[int] = set()
    for path, doc in docs:
        cats = doc.get("categories")
        if not isinstance(cats, list) or not cats:
            raise DatasetError(f"{path}: 'categories' must be a non-empty list, got {short_repr(cats)}")
        for cat in cats:
            if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str | int):
                raise DatasetError(f"{path}: every category needs an integer 'id' and a 'name', got {short_repr(cat)}")
            cid, name = int(cat["id"]), str(cat["name"])
            if cid in names and names[cid] != name:
                raise DatasetError(f"{path}: category id {cid} is {name!r} here but {names[cid]!r} in another split")
            names[cid] = name
            sup = cat.get("supercategory")
            if sup:
                parents.setdefault(str(sup), set()).add(cid)
        anns = doc.get("annotations")
        for ann in anns if isinstance(anns, list) else []:
            if isinstance(ann, dict) and _is_id(ann.get("category_id")):
                used.add(int(ann["category_id"]))
    # Roboflow's category 0 is the project, named as the others' supercategory and never used
    # (even when the project and its only class share a name).
    ids = [c for c in sorted(names) if c in used or not (parents.get(names[c], set()) - {c})]
    return ids, [names[c] for c in ids]


def _read_split(p: _Parsed, cat_index: dict[int, int], log: ProblemLog) -> list[ImageRecord]:
    lists = _split_lists(p, log)
    if lists is None:
        return []
    images, anns = lists
    id_to_idx, paths, stated = _image_table(p.path, images, log)
    n = len(paths)
    sizes = probe_images(paths, log, sources=[str(p.path)] * n, stated=stated)
    skip = np.zeros(n, dtype=bool)
    check = _AnnotationCheck(p.path, anns, id_to_idx, cat_index, skip, log)
    origin, img_idx, xywh, cls, crowd = _annotation_arrays(anns, id_to_idx, cat_index, check)
    boxes = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])

    def locate(j: int) -> tuple[str, int | None]:
        k = int(origin[j])
        ann_id = anns[k].get("id")
        return f"{p.path} annotations[{k}]" + (f" (id {ann_id})" if ann_id is not None else ""), None

    return build_records(paths, sizes, img_idx, boxes, cls, crowd, locate, log, skip)


def _split_lists(p: _Parsed, log: ProblemLog) -> tuple[list[Any], list[Any]] | None:
    """The split's ``images`` and ``annotations`` lists; ``None`` (logged) when either is not a list."""
    images = p.data.get("images")
    if not isinstance(images, list):
        log.add(Kind.BAD_ANNOTATION_FILE, p.path, "no 'images' list", Action.SKIPPED_SPLIT)
        return None
    anns = p.data.get("annotations", [])
    if not isinstance(anns, list):
        log.add(
            Kind.BAD_ANNOTATION_FILE,
            p.path,
            f"'annotations' must be a list, got {short_repr(anns)}",
            Action.SKIPPED_SPLIT,
        )
        return None
    return images, anns


def _image_table(
    json_path: Path, images: list[Any], log: ProblemLog
) -> tuple[dict[Any, int], list[Path], list[tuple[int, int] | None]]:
    """Image id -> index, the image paths and the sizes the file states (``None`` where not a valid size);
    malformed and repeated entries are logged and left out."""
    id_to_idx: dict[Any, int] = {}
    paths: list[Path] = []
    stated: list[tuple[int, int] | None] = []
    file_names = [str(im.get("file_name", "")) for im in images if isinstance(im, dict)]
    folder = _image_dir(json_path, file_names)
    for k, im in enumerate(images):
        if not isinstance(im, dict) or _key(im.get("id")) is None or not isinstance(im.get("file_name"), str):
            msg = f"images[{k}] needs an 'id' and a 'file_name', got {short_repr(im)}"
            log.add(Kind.BAD_ANNOTATION_FILE, json_path, msg, Action.SKIPPED_IMAGE)
            continue
        if im["id"] in id_to_idx:
            log.add(
                Kind.BAD_ANNOTATION_FILE, json_path, f"images[{k}]: image id {im['id']} repeated", Action.SKIPPED_IMAGE
            )
            continue
        id_to_idx[im["id"]] = len(paths)
        paths.append(_resolve_image(folder, str(im["file_name"])))
        w, h = im.get("width"), im.get("height")
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 2**31 for v in (w, h))
        stated.append((int(w), int(h)) if ok else None)
    return id_to_idx, paths, stated


@dataclass
class _AnnotationCheck:
    """Validates one annotation at a time: logs why it cannot be used, and marks its image in ``skip`` when
    the image would lose a label."""

    json_path: Path
    anns: list[Any]
    id_to_idx: dict[Any, int]
    cat_index: dict[int, int]
    skip: np.ndarray
    log: ProblemLog

    def __call__(self, k: int) -> tuple[int, list[float], int, bool] | None:
        """(image index, bbox, class, iscrowd) of annotation ``k``; ``None`` (logged) when it cannot be used."""
        ann, path, log = self.anns[k], self.json_path, self.log
        label = f"annotations[{k}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict):
            log.add(Kind.BAD_ANNOTATION_FILE, path, f"{label} is not an object", Action.SKIPPED_ANNOTATION)
            return None
        i = self.id_to_idx.get(_key(ann.get("image_id")))
        if i is None:
            msg = f"{label}: image_id {ann.get('image_id')!r} not in images"
            log.add(Kind.UNKNOWN_IMAGE, path, msg, Action.SKIPPED_ANNOTATION)
            return None
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            log.add(
                Kind.BAD_FIELDS,
                path,
                f"{label}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}",
                Action.SKIPPED_IMAGE,
            )
            self.skip[i] = True
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in bbox):
            log.add(Kind.NON_NUMERIC, path, f"{label}: bbox {bbox!r} has a non-numeric value", Action.SKIPPED_IMAGE)
            self.skip[i] = True
            return None
        c = self.cat_index.get(_key(ann.get("category_id")))  # type: ignore[arg-type]
        if c is None:
            msg = f"{label}: category_id {ann.get('category_id')!r} is not a known category"
            log.add(Kind.UNKNOWN_CATEGORY, path, msg, Action.SKIPPED_IMAGE)
            self.skip[i] = True
            return None
        return i, bbox, c, bool(ann.get("iscrowd", 0))


def _annotation_arrays(
    anns: list[Any], id_to_idx: dict[Any, int], cat_index: dict[int, int], check: _AnnotationCheck
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(annotation number, image index, xywh, class, iscrowd) of the usable annotations: in one vectorised
    pass when every annotation is well-formed (only those with an unknown image or category go through
    ``check``), else one ``check`` each."""
    fast = _vectorised(anns, id_to_idx, cat_index)
    if fast is not None:
        img_idx, xywh, cls, crowd = fast
        suspect = np.flatnonzero((img_idx < 0) | (cls < 0))
        for k in suspect:  # only these need the per-annotation checks (and their messages)
            check(int(k))
        good = np.ones(len(anns), dtype=bool)
        good[suspect] = False
        origin = np.flatnonzero(good)
        return origin, img_idx[good], xywh[good], cls[good], crowd[good]
    rows = [(k, r) for k in range(len(anns)) if (r := check(k)) is not None]
    origin = np.array([k for k, _ in rows], dtype=np.int64)
    img_idx = np.array([r[0] for _, r in rows], dtype=np.int64)
    xywh = np.array([r[1] for _, r in rows], dtype=np.float64).reshape(-1, 4)
    cls = np.array([r[2] for _, r in rows], dtype=np.int64)
    crowd = np.array([r[3] for _, r in rows], dtype=bool)
    return origin, img_idx, xywh, cls, crowd


def _vectorised(
    anns: list[Any], id_to_idx: dict[Any, int], cat_index: dict[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Arrays for well-formed annotations in one pass (-1 marks an unknown image or category), or
    ``None`` when some annotation is malformed and each needs checking on its own."""
    m = len(anns)
    if not all(type(a) is dict for a in anns):
        return None
    try:
        xywh = np.array([a["bbox"] for a in anns]) if m else np.zeros((0, 4))
    except (KeyError, ValueError, TypeError):
        return None
    if xywh.shape != (m, 4) or xywh.dtype.kind not in "if" or not np.isfinite(xywh).all():
        return None
    img = np.fromiter((id_to_idx.get(_key(a.get("image_id")), -1) for a in anns), np.int64, m)
    cls = np.fromiter((cat_index.get(_key(a.get("category_id")), -1) for a in anns), np.int64, m)
    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, m)
    return img, xywh.astype(np.float64), cls, crowd


def read_coco(path: Path) -> Dataset:
    path = Path(path)
    files = find_annotation_files(path)
    if not files:
        raise DatasetError(f"no COCO annotation JSON found at {path}")
    log = ProblemLog()
    parsed: list[_Parsed] = []
    for split, f in files:
        data = load_json(f, log)
        if data is None:
            continue
        if not isinstance(data, dict):
            log.add(
                Kind.BAD_ANNOTATION_FILE,
                f,
                "top level must be an object with 'images' and 'annotations'",
                Action.SKIPPED_SPLIT,
            )
            continue
        if any(q.split == split for q in parsed):
            log.add(Kind.BAD_ANNOTATION_FILE, f, f"a second annotation file for split {split!r}", Action.SKIPPED_SPLIT)
            continue
        parsed.append(_Parsed(split, f, data))
    if not parsed:
        raise DatasetError(f"no readable COCO annotation file at {path}:\n  " + "\n  ".join(str(p) for p in log.items))
    ids, classes = real_categories([(p.path, p.data) for p in parsed])
    classes = unique_class_names(classes, parsed[0].path, log)
    cat_index = {cid: k for k, cid in enumerate(ids)}
    splits = {p.split: _read_split(p, cat_index, log) for p in parsed}
    root = path if path.is_dir() else path.parent
    return Dataset(classes, {s: splits[s] for s in SPLITS if s in splits}, "coco", root, log)


def coco_dict(records: list[ImageRecord], classes: list[str], file_names: list[str]) -> dict[str, Any]:
    """COCO JSON for one split; category ids are 1..N in class order."""
    images, anns = [], []
    for img_id, (rec, name) in enumerate(zip(records, file_names, strict=True)):
        images.append({"id": img_id, "file_name": name, "width": rec.width, "height": rec.height})
        for box, c, crowd in zip(rec.boxes, rec.class_ids, rec.iscrowd, strict=True):
            x1, y1, x2, y2 = (float(number(v)) for v in box)
            w, h = float(number(x2 - x1)), float(number(y2 - y1))
            anns.append(
                {
                    "id": len(anns),
                    "image_id": img_id,
                    "category_id": int(c) + 1,
                    "bbox": [x1, y1, w, h],
                    "area": float(number(w * h)),
                    "iscrowd": int(crowd),
                    "segmentation": [],
                }
            )
    categories = [{"id": k + 1, "name": n, "supercategory": "none"} for k, n in enumerate(classes)]
    return {
        "info": {"description": "written by speedmap"},
        "licenses": [],
        "categories": categories,
        "images": images,
        "annotations": anns,
    }


def write_coco(ds: Dataset, dst: Path, transfer: Transfer = "copy") -> list[str]:
    """Roboflow's layout: ``dst/{split}/_annotations.coco.json`` beside the split's images."""
    dst = prepare_output(dst)
    for split in SPLITS:
        records = ds.split_records(split)
        if split not in ds.splits:
            continue
        folder = dst / split
        folder.mkdir()
        names = unique_names(records)
        for rec, name in zip(records, names, strict=True):
            place_image(rec.path, folder / name, transfer)
        data = coco_dict(records, ds.classes, names)
        (folder / ROBOFLOW_FILE).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    return []
