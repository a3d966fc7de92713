"""The ONE preprocessing function: letterbox to a square, pad 114, RGB, scale to [0, 1].

Training validation, evaluation, export and the inference engine all call :func:`letterbox`, so the
mAP speedmap reports is measured on exactly the pixels it serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted: ``scale`` then ``pad`` (left, top) pixels; maps boxes back."""

    scale: float
    pad: tuple[int, int]
    image_hw: tuple[int, int]  # the original image's (height, width)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes from network input pixels to original image pixels, clipped to the image."""
        out = xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad[0]) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad[1]) / self.scale
        h, w = self.image_hw
        # (np.clip(..., out=out[:, [0, 2]]) would write into a copy: fancy indexing does not give a view)
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
        return out


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (HxWx3 uint8 RGB) to fit ``size`` x ``size`` keeping its aspect ratio (bilinear),
    centre it on a 114-grey square. Returns the square uint8 image and the mapping."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    left, top = (size - nw) // 2, (size - nh) // 2
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    out[top : top + nh, left : left + nw] = image
    return out, Letterbox(scale, (left, top), (h, w))


def to_input(batch: list[np.ndarray]) -> np.ndarray:
    """Letterboxed uint8 HxWx3 images to the network's float32 NCHW input in [0, 1]."""
    return np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
