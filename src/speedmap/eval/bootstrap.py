"""Paired bootstrap confidence intervals for COCO mAP, exact with respect to COCOeval.

A bootstrap replicate is COCO's bbox mAP (``stats[0]``) and mAP50 (``stats[1]``) on N test images
drawn with replacement, a duplicated image counting as a new image with copies of its annotations
and detections. COCO matches detections to ground truth per image and category, so the matching
(pycocotools' ``evaluateImg``: greedy by score, crowd and ignore rules, area "all", 100 detections,
ten IoU thresholds) is done once; each replicate is then COCO's ``accumulate`` with the image
multiplicities as weights, vectorised over replicates, thresholds and recall points.

A replicate equals pycocotools on the materialised resampled set (tests prove it to 1e-9) with two
caveats: detections of different images with exactly equal scores may be ordered differently than
pycocotools orders the renumbered copies (COCO breaks such ties by image id), so they can differ
slightly; and annotation ids are not used (speedmap renumbers them from 1, while COCOeval counts a
match to annotation id 0 as a false positive). The full set (every image once) is ordered as COCO
orders it, ties included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from speedmap.eval.cocoeval import EvalError

# pycocotools' Params.setDetParams, computed the same way so the floats are identical
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 100
AREA_ALL = (0.0, 1e5**2)
_EPS = np.spacing(1)
_BATCH_ELEMENTS = 1 << 22  # replicates per batch * per-category work stays near 32 MB of float64


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]``."""

    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> list[float]:
        return [self.low, self.high]


METRICS = ("a_map", "a_map50", "b_map", "b_map50", "delta_map", "delta_map50")


@dataclass
class PairedBootstrap:
    """Percentile intervals of A's and B's mAP and of B minus A on the same resampled images."""

    images: int
    resamples: int
    seed: int
    level: float
    a_map: Interval
    a_map50: Interval
    b_map: Interval
    b_map50: Interval
    delta_map: Interval
    delta_map50: Interval
    point: dict[str, float]  # the six metrics on the full test set

    def images_needed(self, metric: str = "map") -> int | None:
        """Test images for the delta's interval to exclude zero, if its half-width shrinks as 1/sqrt(N).

        ``self.images`` when it already does; None when the point delta is 0 (no number of images will do).
        """
        if metric not in ("map", "map50"):
            raise ValueError(f"metric must be 'map' or 'map50', got {metric!r}")
        interval: Interval = getattr(self, f"delta_{metric}")
        delta = self.point[f"delta_{metric}"]
        if delta == 0:
            return None
        if interval.excludes_zero():
            return self.images
        half = (interval.high - interval.low) / 2
        # an asymmetric interval can include zero with a half-width below |delta|: more images, not fewer
        return max(self.images + 1, math.ceil(self.images * (half / abs(delta)) ** 2))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "images": self.images,
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
        }
        doc.update({k: getattr(self, k).to_json() for k in METRICS})
        doc["point"] = dict(self.point)
        doc["images_needed"] = {m: self.images_needed(m) for m in ("map", "map50")}
        return doc


@dataclass
class _Category:
    """One category's matched detections in ``accumulate`` order, reduced to what replicates need."""

    det_img: np.ndarray  # (D,) image index of each kept detection, sorted by score as COCO sorts
    tp_pos: np.ndarray  # (T, P) positions of true positives at each threshold, padded with 0
    tp_mask: np.ndarray  # (T, P) real entries (at least one padding column at the end)
    ig_pos: np.ndarray  # (T, Q) positions of ignored detections, padded with 0
    ig_mask: np.ndarray  # (T, Q)
    ig_before: np.ndarray  # (T, P) ignored detections before each true positive
    npig: np.ndarray  # (images,) ground truth boxes that are not ignored, per image


@dataclass
class _Prepared:
    image_ids: list[Any]  # COCO's image order: sorted unique ids
    categories: list[_Category]


def _padded(rows: list[np.ndarray], extra: int) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(r) for r in rows), default=0) + extra
    pos = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for t, r in enumerate(rows):
        pos[t, : len(r)] = r
        mask[t, : len(r)] = True
    return pos, mask


def _iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``maskUtils.iou`` for xywh boxes (``bbIou``), operation for operation."""
    dx, dy, dw, dh = (d[:, None, j] for j in range(4))
    gx, gy, gw, gh = (g[None, :, j] for j in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    da, ga = dw * dh, gw * gh
    inter = w * h
    union = np.where(crowd[None, :], da, da + ga - inter)  # a crowd region: intersection over the detection
    with np.errstate(divide="ignore", invalid="ignore"):
        out = inter / union
    return np.where((w > 0) & (h > 0), out, 0.0)


def _match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """``evaluateImg``'s greedy matching for one image and category (detections by score, ground
    truth non-ignored first). Returns (T, D): -1 unmatched, else the ground truth index."""
    n_det, n_gt = ious.shape
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[:, None]
    matched = np.zeros((len(IOU_THRS), n_gt), dtype=bool)
    out = np.full((len(IOU_THRS), n_det), -1, dtype=np.int64)
    rows = np.arange(len(IOU_THRS))
    for d in np.flatnonzero((ious >= thr.min()).any(axis=1)):  # others match nothing at any threshold
        ok = (~matched | gt_crowd) & (ious[d] >= thr)
        reg = ok & ~gt_ignore
        # the last ground truth with the highest IoU wins (COCO replaces on ">="); ignored ones only if
        # no regular one matched
        cand = np.where(reg.any(axis=1, keepdims=True), reg, ok & gt_ignore)
        vals = np.where(cand, ious[d], -np.inf)[:, ::-1]
        m = n_gt - 1 - vals.argmax(axis=1)
        hit = cand.any(axis=1)
        out[hit, d] = m[hit]
        matched[rows[hit], m[hit]] = True
    return out


class _GroundTruth(NamedTuple):
    """The ground truth boxes of the known images and categories, in annotation order."""

    key: np.ndarray  # (G,) cell: image index * categories + category index
    box: np.ndarray  # (G, 4) xywh
    crowd: np.ndarray  # (G,)
    ignore: np.ndarray  # (G,) crowd or outside the area range


class _Detections(NamedTuple):
    """The detections of known categories, per cell by score (at most ``MAX_DETS``), cells in order."""

    key: np.ndarray  # (D,) cell, as in _GroundTruth
    box: np.ndarray  # (D, 4) xywh
    score: np.ndarray  # (D,)


def _prepare(gt: dict[str, Any], preds: list[dict[str, Any]]) -> _Prepared:
    """Match once: per category, each detection's status (TP / FP / ignored) at every threshold."""
    image_ids = sorted({im["id"] for im in gt["images"]})
    img_index = {i: k for k, i in enumerate(image_ids)}
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    cat_index = {c: k for k, c in enumerate(cat_ids)}
    n_img, n_cat = len(image_ids), len(cat_ids)

    g = _ground_truth(gt, img_index, cat_index)
    d = _detections(preds, img_index, cat_index)
    status = _match_status(g, d, n_img * n_cat)

    npig_cells = np.bincount(g.key[~g.ignore], minlength=n_img * n_cat).reshape(n_img, n_cat)
    d_img, d_cat = d.key // n_cat, d.key % n_cat
    categories = []
    for k in range(n_cat):
        categories.append(_category(np.flatnonzero(d_cat == k), d.score, d_img, status, npig_cells[:, k]))
    return _Prepared(image_ids, categories)


def _ground_truth(gt: dict[str, Any], img_index: dict[Any, int], cat_index: dict[Any, int]) -> _GroundTruth:
    n_cat = len(cat_index)
    anns = [a for a in gt["annotations"] if a["category_id"] in cat_index and a["image_id"] in img_index]
    g_key = np.array([img_index[a["image_id"]] * n_cat + cat_index[a["category_id"]] for a in anns], dtype=np.int64)
    g_box = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    g_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    g_area = np.array([a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns], dtype=np.float64)
    g_ignore = g_crowd | (g_area < AREA_ALL[0]) | (g_area > AREA_ALL[1])
    return _GroundTruth(g_key, g_box, g_crowd, g_ignore)


def _detections(preds: list[dict[str, Any]], img_index: dict[Any, int], cat_index: dict[Any, int]) -> _Detections:
    """Raises EvalError when a prediction names an image the ground truth does not have."""
    n_cat = len(cat_index)
    unknown = {d["image_id"] for d in preds} - img_index.keys()
    if unknown:
        shown = ", ".join(map(str, sorted(unknown, key=str)[:10]))
        raise EvalError(f"predictions for {len(unknown)} image id(s) not in the ground truth: {shown}")
    dets = [d for d in preds if d["category_id"] in cat_index]
    d_key = np.array([img_index[d["image_id"]] * n_cat + cat_index[d["category_id"]] for d in dets], dtype=np.int64)
    d_box = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
    d_score = np.array([d["score"] for d in dets], dtype=np.float64)
    # per cell (image, category): by score, ties in list order (COCO's mergesort), at most 100; cells
    # in image order, so a category's detections come concatenated as ``accumulate`` concatenates them
    order = np.argsort(-d_score, kind="stable")
    order = order[np.argsort(d_key[order], kind="stable")]
    keys = d_key[order]
    starts = np.searchsorted(keys, keys, side="left")
    order = order[np.arange(len(order)) - starts < MAX_DETS]
    return _Detections(d_key[order], d_box[order], d_score[order])


def _match_status(g: _GroundTruth, d: _Detections, n_cells: int) -> np.ndarray:
    """(T, D) status of each detection at each threshold: 0 FP, 1 TP, 2 ignored (matched to an ignored
    ground truth, or unmatched and outside the area range)."""
    g_key, g_box, g_crowd, g_ignore = g
    d_key, d_box = d.key, d.box
    d_area = d_box[:, 2] * d_box[:, 3]  # loadRes' area for bbox results
    d_out = (d_area < AREA_ALL[0]) | (d_area > AREA_ALL[1])

    n_t = len(IOU_THRS)
    status = np.zeros((n_t, len(d_key)), dtype=np.int8)  # 0 FP, 1 TP, 2 ignored
    g_order = np.argsort(g_key, kind="stable")
    g_starts = np.searchsorted(g_key[g_order], np.arange(n_cells + 1))
    d_starts = np.searchsorted(d_key, np.arange(n_cells + 1))
    for cell in np.intersect1d(np.unique(d_key), g_key[g_order]):
        gi = g_order[g_starts[cell] : g_starts[cell + 1]]
        gi = gi[np.argsort(g_ignore[gi], kind="stable")]  # non-ignored first, as evaluateImg sorts
        lo, hi = d_starts[cell], d_starts[cell + 1]
        m = _match(_iou(d_box[lo:hi], g_box[gi], g_crowd[gi]), g_ignore[gi], g_crowd[gi])
        hit = m >= 0
        ign = np.zeros_like(hit)
        ign[hit] = g_ignore[gi][m[hit]]
        status[:, lo:hi] = np.where(hit, np.where(ign, 2, 1), 0)
    status[(status == 0) & d_out[None, :]] = 2  # unmatched and outside the area range
    return status


def _category(
    sel: np.ndarray, d_score: np.ndarray, d_img: np.ndarray, status: np.ndarray, npig: np.ndarray
) -> _Category:
    """One category from the indices ``sel`` of its detections, reordered by score as ``accumulate``
    orders them."""
    sel = sel[np.argsort(-d_score[sel], kind="stable")]  # accumulate's mergesort
    st = status[:, sel]
    tp = [np.flatnonzero(s == 1) for s in st]
    ig = [np.flatnonzero(s == 2) for s in st]
    tp_pos, tp_mask = _padded(tp, 1)
    ig_pos, ig_mask = _padded(ig, 0)
    ig_before = np.zeros_like(tp_pos)
    for t in range(len(IOU_THRS)):
        ig_before[t, : len(tp[t])] = np.searchsorted(ig[t], tp[t])
    return _Category(d_img[sel], tp_pos, tp_mask, ig_pos, ig_mask, ig_before, npig)


def _recall_needs(npig: np.ndarray) -> np.ndarray:
    """(B, R): the smallest true-positive count c with ``c / npig >= recThr`` in floats, as COCO's
    ``searchsorted(rc, recThrs, side='left')`` finds it (npig > 0)."""
    base = np.maximum(np.floor(REC_THRS[None, :] * npig[:, None]) - 1, 0)
    cand = base[..., None] + np.arange(4)
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = cand / npig[:, None, None] >= REC_THRS[None, :, None]
    return (base + ok.argmax(axis=-1)).astype(np.int64)


def _category_precision(cat: _Category, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO's interpolated precision (B, T, R) of one category for B weight vectors, and which
    replicates have ground truth for it (B,)."""
    b = len(weights)
    n_t, width = cat.tp_pos.shape
    npig = weights @ cat.npig
    has_gt = npig > 0
    if len(cat.det_img) == 0:
        return np.zeros((b, n_t, len(REC_THRS))), has_gt
    dw = weights[:, cat.det_img]
    allw = np.cumsum(dw, axis=1)
    tp_c = np.cumsum(dw[:, cat.tp_pos] * cat.tp_mask, axis=2)  # true positives so far, at each TP
    seen = allw[:, cat.tp_pos]  # detections so far (all of them), at each TP
    if cat.ig_pos.shape[1]:
        ig_c = np.cumsum(dw[:, cat.ig_pos] * cat.ig_mask, axis=2)
        ig_c = np.concatenate([np.zeros((b, n_t, 1), dtype=ig_c.dtype), ig_c], axis=2)
        seen = seen - np.take_along_axis(ig_c, np.broadcast_to(cat.ig_before, (b, n_t, width)), axis=2)
    tpf = tp_c.astype(np.float64)
    pr = np.where(cat.tp_mask, tpf / (seen.astype(np.float64) + _EPS), 0.0)  # tp / (fp + tp + eps)
    # precision envelope: right after a true positive is where precision peaks, so COCO's running max
    # from the right over all detections equals the one over true positives only
    env = np.maximum.accumulate(pr[..., ::-1], axis=2)[..., ::-1]
    top = int(npig.max()) + 1 if b else 1
    tp_c = np.where(cat.tp_mask, tp_c, top)  # padding: never reached, precision 0
    need = _recall_needs(np.where(has_gt, npig, 1).astype(np.float64))  # (B, R)
    rows = np.arange(b * n_t, dtype=np.int64).reshape(b, n_t, 1)
    spacing = top + 1
    flat = (tp_c + rows * spacing).ravel()
    idx = np.searchsorted(flat, (need[:, None, :] + rows * spacing).ravel(), side="left").reshape(b, n_t, -1)
    return np.take_along_axis(env, idx - rows * width, axis=2), has_gt


def _metrics(prep: _Prepared, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mAP50-95, mAP50) for each row of ``weights`` (B, images): -1 where no category has ground truth."""
    b = len(weights)
    s_all, s_50, n_valid = np.zeros(b), np.zeros(b), np.zeros(b)
    for cat in prep.categories:
        q, has_gt = _category_precision(cat, weights)
        s_all += np.where(has_gt, q.sum(axis=(1, 2)), 0.0)
        s_50 += np.where(has_gt, q[:, 0].sum(axis=1), 0.0)
        n_valid += has_gt
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(n_valid > 0, s_all / (n_valid * len(IOU_THRS) * len(REC_THRS)), -1.0)
        m50 = np.where(n_valid > 0, s_50 / (n_valid * len(REC_THRS)), -1.0)
    return m, m50


def _batched(prep: _Prepared, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    per_row = max([1] + [max(len(c.det_img), c.tp_pos.size, c.ig_pos.size) for c in prep.categories])
    step = max(1, _BATCH_ELEMENTS // per_row)
    parts = [_metrics(prep, weights[i : i + step]) for i in range(0, len(weights), step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def replicate_metrics(gt: dict, preds: list[dict], image_ids: Sequence) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the image multiset ``image_ids`` (repeats allowed) — one bootstrap replicate.

    Equal to pycocotools' COCOeval (bbox) on those images with each repeat renumbered as a new image,
    up to score ties between images (see the module docstring). -1 where no ground truth is left.
    """
    prep = _prepare(gt, preds)
    index = {i: k for k, i in enumerate(prep.image_ids)}
    try:
        picks = [index[i] for i in image_ids]
    except KeyError as exc:
        raise EvalError(f"image id {exc.args[0]!r} is not in the ground truth") from exc
    weights = np.bincount(np.asarray(picks, dtype=np.int64), minlength=len(index))[None, :]
    m, m50 = _metrics(prep, weights)
    return float(m[0]), float(m50[0])


def paired_bootstrap(
    gt: dict, preds_a: list[dict], preds_b: list[dict], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> PairedBootstrap:
    """Percentile bootstrap of A's and B's mAP and mAP50 and of B minus A on the same test set.

    Each resample draws N image ids with replacement (N = the test images, a seeded
    ``numpy.random.Generator``) and scores A and B on the same draw, so the delta's interval is paired.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    prep_a, prep_b = _prepare(gt, preds_a), _prepare(gt, preds_b)
    n = len(prep_a.image_ids)
    if n == 0:
        raise EvalError("no test images")
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    full = np.ones((1, n), dtype=np.int64)
    (a_m, a_m50), (b_m, b_m50) = _batched(prep_a, weights), _batched(prep_b, weights)
    (pa, pa50), (pb, pb50) = _metrics(prep_a, full), _metrics(prep_b, full)
    reps = {
        "a_map": a_m,
        "a_map50": a_m50,
        "b_map": b_m,
        "b_map50": b_m50,
        "delta_map": b_m - a_m,
        "delta_map50": b_m50 - a_m50,
    }
    point = {
        "a_map": pa[0],
        "a_map50": pa50[0],
        "b_map": pb[0],
        "b_map50": pb50[0],
        "delta_map": pb[0] - pa[0],
        "delta_map50": pb50[0] - pa50[0],
    }
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    intervals = {k: Interval(*(float(x) for x in np.percentile(v, tails))) for k, v in reps.items()}
    return PairedBootstrap(n, resamples, seed, level, **intervals, point={k: float(v) for k, v in point.items()})
