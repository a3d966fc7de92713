"""Draw :class:`Detections` on an image: boxes and labels, one colour per class (Pillow only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from speedmap.detections import Detections

# A qualitative palette that stays readable on photos (Tableau 10).
PALETTE = [
    (78, 121, 167),
    (242, 142, 43),
    (225, 87, 89),
    (118, 183, 178),
    (89, 161, 79),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
]


def colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[class_id % len(PALETTE)]


def annotate(image: np.ndarray, det: Detections, labels: bool = True, stroke: int | None = None) -> Image.Image:
    """A copy of ``image`` (HxWx3 RGB) with boxes and ``class confidence`` labels drawn."""
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    width = stroke if stroke else max(1, round(max(im.size) / 400))
    font = ImageFont.load_default(size=max(10, round(max(im.size) / 60)))
    for (x1, y1, x2, y2), conf, cid, name in zip(
        det.xyxy.tolist(), det.confidence.tolist(), det.class_id.tolist(), det.class_name, strict=True
    ):
        c = colour(cid)
        draw.rectangle((x1, y1, x2, y2), outline=c, width=width)
        if labels:
            text = f"{name} {conf:.2f}"
            left, t, r, b = draw.textbbox((0, 0), text, font=font)
            ty = y1 - (b - t) - 4 if y1 - (b - t) - 4 >= 0 else y1
            tx = max(0, min(x1, im.size[0] - (r - left) - 4))  # keep the label inside the image
            draw.rectangle((tx, ty, tx + (r - left) + 4, ty + (b - t) + 4), fill=c)
            draw.text((tx + 2, ty + 2 - t), text, fill=(255, 255, 255), font=font)
    return im


def to_jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
