"""Image decoding shared by the dataset layer and the inference engine.

Both honour EXIF orientation the same way (Pillow's ``exif_transpose`` semantics), so the
sizes the dataset layer reads from headers are the sizes the engine sees after decoding.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# EXIF orientations 5-8 rotate by 90 or 270 degrees: width and height swap.
_SWAPS_AXES = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112

ImageSource = str | Path | bytes


# Decoding more pixels than this is refused before any pixel memory is allocated (a 20000x20000
# image would need 1.2 GB as RGB). Override with the SPEEDMAP_MAX_PIXELS environment variable.
MAX_PIXELS = 100_000_000


class ImageReadError(ValueError):
    """An image file is missing, unreadable or corrupt."""


def max_pixels() -> int:
    try:
        return int(os.environ.get("SPEEDMAP_MAX_PIXELS", MAX_PIXELS))
    except ValueError:
        return MAX_PIXELS


def _too_large(w: int, h: int) -> ImageReadError:
    return ImageReadError(
        f"image is {w}x{h} = {w * h / 1e6:.0f} MP, above the {max_pixels() / 1e6:.0f} MP pixel limit "
        "(raise it with SPEEDMAP_MAX_PIXELS if this is intended)"
    )


def _open(source: ImageSource) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, bytes | bytearray | memoryview):
                return Image.open(io.BytesIO(source))
            return Image.open(source)
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file not found: {source}") from exc
    except Image.DecompressionBombError:
        # Pillow refuses to even open it; read the size (header only) to word our own limit's error.
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source) as im:
                w, h = im.size
        finally:
            Image.MAX_IMAGE_PIXELS = old
        raise _too_large(w, h) from None
    except UnidentifiedImageError as exc:
        what = "the data" if isinstance(source, bytes | bytearray | memoryview) else str(source)
        raise ImageReadError(f"not a readable image: {what} is not in a known image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) of an opened image; 1 when absent or invalid."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks are ignored, as exif_transpose does
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_size(source: ImageSource) -> tuple[int, int]:
    """``(width, height)`` as displayed (EXIF orientation applied), read from the header only.

    JPEG and PNG headers are parsed directly (a few reads, no decoder); anything the fast parser is
    not sure about (other formats, XMP orientation, odd EXIF) goes through Pillow, whose semantics
    the fast path reproduces exactly (tested on all eight orientations).
    """
    fast = None
    if not isinstance(source, bytes | bytearray | memoryview):
        try:
            fast = fast_header(source)
        except FileNotFoundError as exc:
            raise ImageReadError(f"image file not found: {source}") from exc
        except OSError:
            fast = None
    if fast is not None:
        w, h, orient = fast
    else:
        im = _open(source)
        with im:
            w, h = im.size
            orient = orientation(im)
    if orient in _SWAPS_AXES:
        w, h = h, w
    if w <= 0 or h <= 0:
        raise ImageReadError(f"image header gives an empty size {w}x{h}")
    return w, h


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fast_header(path: str | Path) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` of a JPEG or PNG file, or ``None`` to defer to Pillow."""
    fd = os.open(path, os.O_RDONLY)  # raw fd: half the cost of open() on many small files
    try:
        head = os.read(fd, 8192)
        if head[:3] == b"\xff\xd8\xff":
            return _jpeg_header(_Buffer(fd, head))
        if head[:8] == _PNG_SIGNATURE:
            return _png_header(fd)
        return None
    finally:
        os.close(fd)


def _exif_orientation(tiff: bytes) -> int | None:
    """Orientation from a TIFF/EXIF block (IFD0 tag 0x0112); 1 if absent, ``None`` if unsure."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for k in range(count):
        e = ifd + 2 + 12 * k
        if e + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[e : e + 2], order) == _ORIENTATION_TAG:
            kind, n = int.from_bytes(tiff[e + 2 : e + 4], order), int.from_bytes(tiff[e + 4 : e + 8], order)
            if n != 1 or kind not in (3, 4):
                return None
            value = int.from_bytes(tiff[e + 8 : e + (10 if kind == 3 else 12)], order)
            return value if 1 <= value <= 8 else 1
    return 1


class _Buffer:
    """The start of a file in memory, extended on demand (header parsing without many tiny reads)."""

    def __init__(self, fd: int | None, data: bytes) -> None:
        self.fd, self.data = fd, data  # fd None: ``data`` is the whole file

    def need(self, n: int) -> bool:
        while len(self.data) < n:
            if self.fd is None:
                return False
            chunk = os.read(self.fd, max(n - len(self.data), 16384))
            if not chunk:
                return False
            self.data += chunk
        return True


def _jpeg_header(buf: _Buffer, info: dict[str, int] | None = None) -> tuple[int, int, int] | None:
    size: tuple[int, int] | None = None
    orient: int | None = None
    xmp = False
    pos = 2
    while True:
        if not buf.need(pos + 2):
            return None
        data = buf.data
        if data[pos] != 0xFF:
            return None
        while data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
            if not buf.need(pos + 2):
                return None
            data = buf.data
        m = data[pos + 1]
        pos += 2
        if m == 0xDA or m == 0xD9:  # start of scan / end of image: headers done
            break
        if 0xD0 <= m <= 0xD7 or m == 0x01:
            continue
        if not buf.need(pos + 2):
            return None
        length = int.from_bytes(buf.data[pos : pos + 2], "big")
        if length < 2 or not buf.need(pos + length):
            return None
        seg = buf.data[pos + 2 : pos + length]
        pos += length
        if m in _SOF:
            if len(seg) < 5:
                return None
            size = (int.from_bytes(seg[3:5], "big"), int.from_bytes(seg[1:3], "big"))
            if info is not None and len(seg) > 5:
                info["components"] = seg[5]
        elif m == 0xE1:
            if seg[:6] == b"Exif\x00\x00" and orient is None:
                orient = _exif_orientation(seg[6:])
                if orient is None:
                    return None
            elif seg.startswith(_XMP_JPEG):
                xmp = True
    if size is None or (xmp and orient in (None, 1)):
        return None  # Pillow also reads orientation from XMP: let it decide
    return size[0], size[1], orient or 1


def _png_header(fd: int) -> tuple[int, int, int] | None:
    """Walk the chunk headers (positional reads, no decoding) up to IEND."""
    size: tuple[int, int] | None = None
    orient = 1
    pos = 8
    while True:
        head = os.pread(fd, 8, pos)
        if len(head) < 8:
            return None  # truncated before IEND: let Pillow judge
        length, kind = int.from_bytes(head[:4], "big"), head[4:8]
        if kind == b"IHDR":
            data = os.pread(fd, 8, pos + 8)
            size = (int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big"))
        elif kind == b"eXIf":
            data = os.pread(fd, length, pos + 8)
            found = _exif_orientation(data[6:] if data.startswith(b"Exif\x00\x00") else data)
            if found is None:
                return None
            orient = found
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            if os.pread(fd, min(length, 80), pos + 8).startswith((b"XML:com.adobe.xmp", b"Raw profile type exif")):
                return None
        elif kind == b"IEND":
            break
        pos += length + 12
    return (size[0], size[1], orient) if size else None


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
        # Alpha is dropped (Pillow's conversion): colour values under transparent pixels are kept.
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def _jpeg_decoder() -> tuple[str, Any] | None:
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


def jpeg_decoder_name() -> str:
    """Which JPEG decoder :func:`read_image` uses: ``simplejpeg``, ``cv2`` or ``pil``."""
    dec = _jpeg_decoder()
    return dec[0] if dec else "pil"


_ORIENT_OPS = {  # EXIF orientation -> numpy view that shows the image upright (Pillow's exif_transpose)
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _read_jpeg_fast(data: bytes) -> np.ndarray | None:
    """Decode a plain JPEG (1 or 3 components, complete up to its EOI marker) with the fast decoder,
    EXIF orientation applied as Pillow does; None to let Pillow handle anything else."""
    key = os.environ.get("SPEEDMAP_JPEG_DECODER", "auto")
    if key not in _DECODERS:
        _DECODERS[key] = _jpeg_decoder()
    dec = _DECODERS[key]
    if dec is None or data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None
    info: dict[str, int] = {}
    head = _jpeg_header(_Buffer(None, data), info)
    if head is None or info.get("components") not in (1, 3):
        return None
    w, h, orient = head
    if w * h > max_pixels():
        raise _too_large(w, h)
    try:
        rgb = dec[1](data)
    except Exception:  # let Pillow word the error (or decode what this decoder refuses)
        return None
    if rgb.shape[:2] != (h, w):
        return None
    op = _ORIENT_OPS.get(orient)
    return np.ascontiguousarray(op(rgb)) if op else np.ascontiguousarray(rgb)


def read_image(source: ImageSource) -> np.ndarray:
    """Decode fully to an ``HxWx3`` uint8 RGB array with EXIF orientation applied. Plain JPEGs go
    through the fastest installed decoder (pixel-identical to Pillow's libjpeg-turbo), the rest
    through Pillow."""
    data = source if isinstance(source, bytes) else None
    if data is None and str(source).lower().endswith((".jpg", ".jpeg", ".jpe", ".jfif")):
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError as exc:
            raise ImageReadError(f"image file not found: {source}") from exc
    if data is not None:
        fast = _read_jpeg_fast(data)
        if fast is not None:
            return fast
        source = data
    im = _open(source)
    with im:
        w, h = im.size
        if w * h > max_pixels():
            raise _too_large(w, h)
        try:
            im.load()
            oriented = ImageOps.exif_transpose(im) or im
            rgb = _to_rgb(oriented)
            return np.asarray(rgb, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"corrupt image data ({exc})") from exc


def as_rgb(image: object, channels: str = "rgb") -> np.ndarray:
    """Any supported image input as an ``HxWx3`` uint8 RGB array.

    Paths and encoded bytes are decoded (EXIF orientation applied); Pillow images are converted (EXIF
    orientation applied when they carry it); numpy arrays may be ``HxW`` grey, ``HxWx1``, ``HxWx3`` or
    ``HxWx4`` with ``channels`` saying whether colour arrays are ``"rgb"`` or ``"bgr"`` (OpenCV);
    16-bit arrays are scaled to 8 bits, floats are taken as 0-1.
    """
    if isinstance(image, str | Path | bytes | bytearray | memoryview):
        return read_image(bytes(image) if isinstance(image, bytearray | memoryview) else image)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w * h > max_pixels():
            raise _too_large(w, h)
        oriented = ImageOps.exif_transpose(image) or image
        return np.asarray(_to_rgb(oriented), dtype=np.uint8).copy()
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, channels)
    raise TypeError(f"unsupported image input {type(image).__name__}: give a path, bytes, a PIL image or an array")


def _array_to_rgb(arr: np.ndarray, channels: str) -> np.ndarray:
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"channels must be 'rgb' or 'bgr', not {channels!r}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape[:2]:
        raise ImageReadError(f"array of shape {arr.shape} is not an image (HxW, HxWx3 or HxWx4)")
    if arr.shape[0] * arr.shape[1] > max_pixels():
        raise _too_large(arr.shape[1], arr.shape[0])
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 + 32767) // 65535
    elif arr.dtype.kind == "f":
        arr = np.clip(arr * 255.0 + 0.5, 0, 255)
    elif arr.dtype == np.bool_:
        arr = arr * 255
    arr = arr.astype(np.uint8, copy=False)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]  # alpha dropped, as read_image does for RGBA files
    if channels == "bgr":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)
