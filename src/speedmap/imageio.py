"""Image decoding shared by the dataset layer and the inference engine.

Both honour EXIF orientation the same way (Pillow's ``exif_transpose`` semantics), so the
sizes the dataset layer reads from headers are the sizes the engine sees after decoding.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# EXIF orientations 5-8 rotate by 90 or 270 degrees: width and height swap.
_SWAPS_AXES = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112

ImageSource = str | Path | bytes


class ImageReadError(ValueError):
    """An image file is missing, unreadable or corrupt."""


def _open(source: ImageSource) -> Image.Image:
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            return Image.open(io.BytesIO(source))
        return Image.open(source)
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file not found: {source}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) of an opened image; 1 when absent or invalid."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks are ignored, as exif_transpose does
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_size(source: ImageSource) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation applied), read from the header only."""
    im = _open(source)
    with im:
        w, h = im.size
        if orientation(im) in _SWAPS_AXES:
            w, h = h, w
    if w <= 0 or h <= 0:
        raise ImageReadError(f"image header gives an empty size {w}x{h}")
    return w, h


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, LA, P, RGBA, I;16, I, F, CMYK, ...) to 8-bit RGB."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 / 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        arr8 = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels composite onto black, as most viewers and exporters do.
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def read_image(source: ImageSource) -> np.ndarray:
    """Decode fully to an ``HxWx3`` uint8 RGB array with EXIF orientation applied."""
    im = _open(source)
    with im:
        try:
            im.load()
            oriented = ImageOps.exif_transpose(im) or im
            rgb = _to_rgb(oriented)
            return np.asarray(rgb, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"corrupt image data ({exc})") from exc
