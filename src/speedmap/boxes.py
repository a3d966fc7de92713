"""Box arithmetic on numpy arrays (``xyxy``), shared by evaluation and the inference engine."""

from __future__ import annotations

import numpy as np


def box_area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas, shape ``(len(a), len(b))``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU, shape ``(len(a), len(b))``; 0 where both boxes are empty."""
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    return np.column_stack([b[:, :2], b[:, 2:] - b[:, :2]])


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.column_stack([b[:, :2], b[:, :2] + b[:, 2:]])
