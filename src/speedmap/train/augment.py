"""Training augmentations on numpy/OpenCV: mosaic, scale/translate, HSV jitter, horizontal flip.

Every random draw comes from a generator seeded by ``(seed, epoch, index)``, so a sample is the same
whatever worker builds it, and a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import cv2
import numpy as np

from speedmap.preprocess import PAD_VALUE

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # image HxWx3 uint8 RGB, boxes (n, 4) xyxy, classes (n,)


def mosaic(samples: list[Sample], size: int, rng: np.random.Generator) -> Sample:
    """Four samples (each at most ``size`` on a side) around a random centre of a 2*size canvas."""
    s = size
    xc, yc = (int(v) for v in rng.uniform(s * 0.5, s * 1.5, 2))
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, dtype=np.uint8)
    boxes, classes = [], []
    for k, (img, b, c) in enumerate(samples):
        h, w = img.shape[:2]
        if k == 0:  # top left
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(yc + h, 2 * s)
            x1b, y1b = w - (x2a - x1a), 0
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(yc + h, 2 * s)
            x1b, y1b = 0, 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b : y1b + (y2a - y1a), x1b : x1b + (x2a - x1a)]
        shift = np.array([x1a - x1b, y1a - y1b, x1a - x1b, y1a - y1b], dtype=np.float32)
        boxes.append(b + shift)
        classes.append(c)
    return canvas, np.concatenate(boxes), np.concatenate(classes)


def random_affine(
    sample: Sample, size: int, rng: np.random.Generator, scale: float = 0.5, translate: float = 0.1
) -> Sample:
    """Scale about the centre and translate, into a ``size`` x ``size`` output; boxes follow, are
    clipped, and are dropped when too small or mostly cut away."""
    img, boxes, classes = sample
    h, w = img.shape[:2]
    s = rng.uniform(1 - scale, 1 + scale)
    tx, ty = rng.uniform(0.5 - translate, 0.5 + translate, 2) * size
    m = np.array([[s, 0, tx - s * w / 2], [0, s, ty - s * h / 2]], dtype=np.float64)
    out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return out, boxes, classes
    new = boxes * s + np.array([m[0, 2], m[1, 2], m[0, 2], m[1, 2]], dtype=np.float32)
    clipped = new.clip(0, size)
    wh = clipped[:, 2:] - clipped[:, :2]
    area_before = np.prod(new[:, 2:] - new[:, :2], axis=1)
    keep = (wh[:, 0] > 2) & (wh[:, 1] > 2) & (np.prod(wh, axis=1) > 0.1 * area_before)
    return out, clipped[keep].astype(np.float32), classes[keep]


def hsv_jitter(img: np.ndarray, rng: np.random.Generator, h: float = 0.015, s: float = 0.7, v: float = 0.4) -> None:
    """Random hue/saturation/value gains, in place (uint8 RGB)."""
    gains = rng.uniform(-1, 1, 3) * (h, s, v) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    cv2.cvtColor(merged, cv2.COLOR_HSV2RGB, dst=img)


def hflip(sample: Sample) -> Sample:
    img, boxes, classes = sample
    w = img.shape[1]
    flipped = boxes.copy()
    flipped[:, [0, 2]] = w - boxes[:, [2, 0]]
    return np.ascontiguousarray(img[:, ::-1]), flipped, classes
