"""Decoded images to upright ``HxWx3`` uint8 RGB: Pillow images converted in row chunks (16-bit by integer
arithmetic, never float64 whole images) with EXIF orientation applied, and the fast JPEG decoders."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from speedmap.imageheader import SWAPS_AXES

CHUNK_PIXELS = 1 << 18  # pixels converted at a time (bounds the temporary float/int arrays)


def scale16(a: np.ndarray) -> np.ndarray:
    """16-bit values (0-65535) to 8 bits, rounded half up: ``(a * 255 + 32767) // 65535`` in uint32, which
    equals the float ``round(a * 255 / 65535)`` exactly (the exact quotient is never within 1/131070 of .5)."""
    b = a.astype(np.uint32)
    b *= 255
    b += 32767
    b //= 65535
    return b.astype(np.uint8)


def rows_to_rgb(im: Image.Image) -> Callable[[Image.Image], np.ndarray]:
    """A function from a band of rows of ``im`` (same mode) to uint8 RGB ``HxWx3``, or ``HxW`` for grey;
    any Pillow mode: 1, L, P, LA, PA, RGB, RGBA, CMYK, YCbCr, I;16*, I, F, ..."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return np.asarray
    if mode == "1":
        return lambda rows: np.asarray(rows.convert("L"))
    if mode.startswith("I;16"):
        return lambda rows: scale16(np.asarray(rows))
    if mode == "I":  # 32-bit integers: 16-bit scaling when the values go above 255, else as they are
        if im.getextrema()[1] > 255:
            return lambda rows: scale16(np.clip(np.asarray(rows), 0, 65535))
        return lambda rows: np.clip(np.asarray(rows), 0, 255).astype(np.uint8)
    if mode == "F":
        scale = 255.0 / 65535.0 if im.getextrema()[1] > 255 else 1.0

        def floats(rows: Image.Image) -> np.ndarray:
            a = np.clip(np.asarray(rows, dtype=np.float64) * scale + 0.5, 0, 255)  # one band of rows
            return np.nan_to_num(a, nan=0.0).astype(np.uint8)

        return floats
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        # Alpha is dropped (Pillow's conversion): colour values under transparent pixels are kept.
        return lambda rows: np.asarray(rows.convert("RGBA").convert("RGB"))
    return lambda rows: np.asarray(rows.convert("RGB"))


# EXIF orientation -> the inverse of ORIENT_OPS (a view again): row band [y0, y1) of the decoded image lands
# in ``ORIENT_OPS[o](UNDO_ORIENT[o](out)[y0:y1])``, a block of rows or columns of the upright ``out``.
UNDO_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


TRANSPOSE = {  # EXIF orientation -> Pillow's transposition (exif_transpose's table)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def to_rgb_array(im: Image.Image, orient: int) -> np.ndarray:
    """``im`` (any mode, decoded or not) as an upright ``HxWx3`` uint8 array, converted a band of rows at a
    time straight into the result: beyond the decoded image itself, memory is the result plus a few MB.
    Each band is transposed by Pillow (fast) and lands in a block of rows or columns of the result."""
    w, h = im.size
    convert = rows_to_rgb(im)
    out = np.empty((w, h, 3) if orient in SWAPS_AXES else (h, w, 3), np.uint8)
    method = TRANSPOSE.get(orient)
    layout = UNDO_ORIENT[orient](out) if method is not None else out  # ``out`` seen in the decoded layout
    step = max(1, CHUNK_PIXELS // max(w, 1))
    for y in range(0, h, step):
        rows = im.crop((0, y, w, min(h, y + step)))
        if method is None:
            region = out[y : y + step]
        else:
            region, rows = ORIENT_OPS[orient](layout[y : y + step]), rows.transpose(method)
        rgb = convert(rows)
        if rgb.ndim == 2:  # grey: one channel at a time is 3x faster than a broadcast
            for c in range(3):
                region[:, :, c] = rgb
        else:
            region[...] = rgb
    return out


def jpeg_decoder() -> tuple[str, Any] | None:
    """The fastest installed JPEG decoder besides Pillow (measured in benchmarks/bench_engine.py:
    simplejpeg, then OpenCV, are several times faster than Pillow's decode + convert on this machine).
    ``SPEEDMAP_JPEG_DECODER=pil|cv2|simplejpeg`` forces one."""
    choice = os.environ.get("SPEEDMAP_JPEG_DECODER", "auto")
    if choice in ("auto", "simplejpeg"):
        try:
            import simplejpeg

            return "simplejpeg", lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ImportError:
            pass
    if choice in ("auto", "cv2"):
        try:
            import cv2

            def decode(data: bytes) -> np.ndarray:
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
                if bgr is None:
                    raise ValueError("OpenCV could not decode the JPEG")
                return bgr[:, :, ::-1]

            return "cv2", decode
        except ImportError:
            pass
    return None


_DECODERS: dict[str, tuple[str, Any] | None] = {}  # by SPEEDMAP_JPEG_DECODER value


def cached_jpeg_decoder() -> tuple[str, Any] | None:
    """:func:`jpeg_decoder`, found once per ``SPEEDMAP_JPEG_DECODER`` value."""
    key = os.environ.get("SPEEDMAP_JPEG_DECODER", "auto")
    if key not in _DECODERS:
        _DECODERS[key] = jpeg_decoder()
    return _DECODERS[key]


def jpeg_decoder_name() -> str:
    """Which JPEG decoder :func:`read_image` uses: ``simplejpeg``, ``cv2`` or ``pil``."""
    dec = jpeg_decoder()
    return dec[0] if dec else "pil"


ORIENT_OPS = {  # EXIF orientation -> numpy view that shows the image upright (Pillow's exif_transpose)
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
