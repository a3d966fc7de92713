"""Image decoding shared by the dataset layer, the inference engine and the HTTP server.

Both honour EXIF orientation the same way (Pillow's ``exif_transpose`` semantics), so the
sizes the dataset layer reads from headers are the sizes the engine sees after decoding.

The server decodes uploads, so decoding is written for hostile input:

- only the formats people send are decoded: JPEG (and MPO), PNG, WebP, BMP, GIF, TIFF (and DNG), plus
  greyscale PFM and HEIF (with the pillow-heif plugin registered), which the dataset layer lists. Pillow's
  other ~35 formats (DDS, EPS through Ghostscript, ICO, TGA, ...) are refused before any of their code runs;
- the first frame only (animated GIF/WebP/PNG, multi-page TIFF, MPO);
- the pixel limit (:func:`max_pixels`) is checked from the header before any pixel memory is allocated.
  Pillow's plugins are called directly rather than through ``Image.open``, so Pillow's own open-time check
  of the global ``Image.MAX_IMAGE_PIXELS`` (a warning from 1x, an error from 2x) neither applies nor is
  touched: no global state changes at decode time, whatever ``SPEEDMAP_MAX_PIXELS`` says;
- every failure, of any exception type, is an :class:`ImageReadError` whose message names no file path for
  bytes input;
- memory is bounded by the output: the image decoded in its own mode (1 to 4 bytes a pixel) plus the
  ``HxWx3`` uint8 result, converted in row chunks (16-bit by integer arithmetic, never float64 whole images).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    PpmImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from speedmap.errors import SpeedmapError
from speedmap.imageheader import ORIENTATION_TAG, SWAPS_AXES, HeaderBuffer, fast_header, jpeg_header
from speedmap.imagepixels import ORIENT_OPS, cached_jpeg_decoder, to_rgb_array

ImageSource = str | Path | bytes


# Decoding more pixels than this is refused before any pixel memory is allocated (a 20000x20000
# image would need 1.2 GB as RGB). Override with the SPEEDMAP_MAX_PIXELS environment variable.
MAX_PIXELS = 100_000_000

# Importing a plugin registers it in ``Image.OPEN``; only these are ever asked to open anything, in this
# order (their signatures do not overlap). HEIF is used when pillow-heif has registered it.
_PLUGINS = (
    JpegImagePlugin,
    PngImagePlugin,
    WebPImagePlugin,
    GifImagePlugin,
    BmpImagePlugin,
    TiffImagePlugin,
    PpmImagePlugin,
)
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "HEIF")
SUPPORTED_FORMATS = "JPEG, PNG, WebP, BMP, GIF, TIFF"
_NAMES = {"WEBP": "WebP", "PPM": "PFM"}

# Rows are converted to RGB this many pixels at a time: temporaries stay a few MB whatever the image size.


class ImageReadError(SpeedmapError):
    """An image file is missing, unreadable, corrupt, too large or in an unsupported format."""


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


def _is_data(source: object) -> bool:
    return isinstance(source, bytes | bytearray | memoryview)


def _label(source: object) -> str:
    return "the data" if _is_data(source) else str(source)


def _reason(exc: BaseException, source: object) -> str:
    """``ExceptionType: message``, short; for bytes input the message is left out if it could hold a path."""
    text = " ".join(str(exc).split())[:120]
    if _is_data(source) and ("/" in text or "\\" in text):
        text = ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _bomb(exc: Image.DecompressionBombError) -> ImageReadError:
    # Raised inside a few plugins (GIF frames larger than the screen, TIFF tiles, WebP) from Pillow's own
    # limit, which may be below ours when SPEEDMAP_MAX_PIXELS is raised: say which limit it is.
    return ImageReadError(
        f"image is above Pillow's decompression-bomb limit ({_reason(exc, b'')}); "
        "raise PIL.Image.MAX_IMAGE_PIXELS as well as SPEEDMAP_MAX_PIXELS if this is intended"
    )


def _webp_canvas(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the first 30 bytes of a WebP file (lossy, lossless or extended), or None."""
    kind = head[12:16]
    if kind == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if kind == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if kind == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _other_format(prefix: bytes) -> str | None:
    """The name of the unsupported format whose signature ``prefix`` carries, if Pillow knows it. Only the
    plugins' signature checks run (registering every plugin is what ``Image.open`` does too)."""
    Image.init()
    for fmt, (_, accept) in list(Image.OPEN.items()):
        if (fmt in _FORMATS and fmt != "PPM") or accept is None:  # of PPM, only PFM is supported
            continue
        try:
            ok = accept(prefix)
        except Exception:
            continue
        if ok and not isinstance(ok, str):
            return fmt
    return None


def _identify(fp: IO[bytes], filename: str, source: object) -> Image.Image:
    """Open (header only) with the first allowed plugin whose signature matches, as ``Image.open`` does but
    without its global-limit check; refuse empty or too large sizes before anything is decoded."""
    prefix = fp.read(16)
    failed: tuple[str, Exception] | None = None
    for fmt in _FORMATS:
        entry = Image.OPEN.get(fmt)
        if entry is None or (fmt == "PPM" and not prefix.startswith(b"Pf")):  # of the Netpbm family, PFM only
            continue
        factory, accept = entry
        try:
            im = _open_with(fmt, factory, accept, fp, filename, prefix, source)
        except ImageReadError:
            raise
        except Image.DecompressionBombError as exc:
            raise _bomb(exc) from None
        except Exception as exc:  # Pillow would try the next plugin; with disjoint signatures none will match
            failed = failed or (fmt, exc)
            continue
        if im is None:
            continue
        return _within_limits(im)
    _unidentified(prefix, failed, source)


def _open_with(
    fmt: str,
    factory: Callable[..., Image.Image],
    accept: Callable[[bytes], Any] | None,
    fp: IO[bytes],
    filename: str,
    prefix: bytes,
    source: object,
) -> Image.Image | None:
    """The image opened by ``fmt``'s plugin; ``None`` when its signature check does not accept ``prefix``. A
    WebP canvas is checked against the pixel limit before libwebp sees the file."""
    if accept is not None:
        ok = accept(prefix)
        if not ok or isinstance(ok, str):  # a string: recognised, but Pillow lacks the codec
            return None
    fp.seek(0)
    if fmt == "WEBP":  # libwebp allocates the whole canvas when the file is opened: check first
        size = _webp_canvas(fp.read(30))
        if size is None:
            raise ImageReadError(f"not a readable image: {_label(source)} has no WebP canvas size")
        if size[0] * size[1] > max_pixels():
            raise _too_large(*size)
        fp.seek(0)
    return factory(fp, filename)


def _within_limits(im: Image.Image) -> Image.Image:
    """``im`` when its header size is neither empty nor above the pixel limit; otherwise closed and refused."""
    w, h = im.size
    if w <= 0 or h <= 0 or w * h > max_pixels():
        im.close()
        raise _too_large(w, h) if w > 0 and h > 0 else ImageReadError(f"image header gives an empty size {w}x{h}")
    return im


def _unidentified(prefix: bytes, failed: tuple[str, Exception] | None, source: object) -> NoReturn:
    """Refuse an image no allowed plugin opened: the plugin that failed on it, else the unsupported format it
    is in, else no known format."""
    label = _label(source)
    if failed is not None:
        fmt, exc = failed
        name = _NAMES.get(fmt, fmt)
        raise ImageReadError(
            f"not a readable image: {label} is not a valid {name} file ({_reason(exc, source)})"
        ) from exc
    other = _other_format(prefix)
    if other is not None:
        raise ImageReadError(
            f"not a readable image: {label} is in {other} format, which is not supported ({SUPPORTED_FORMATS})"
        )
    raise ImageReadError(f"not a readable image: {label} is not in a supported format ({SUPPORTED_FORMATS})")


@contextlib.contextmanager
def _opened(source: ImageSource, data: bytes | None = None) -> Iterator[Image.Image]:
    """The opened (not yet decoded) image of a path or of bytes; ``data``: the file's bytes, already read."""
    with contextlib.ExitStack() as stack:
        if data is not None or _is_data(source):
            fp: IO[bytes] = io.BytesIO(data if data is not None else source)  # type: ignore[arg-type]
            filename = ""
        else:
            filename = os.fspath(source)
            try:
                fp = stack.enter_context(open(filename, "rb"))
            except FileNotFoundError as exc:
                raise ImageReadError(f"image file not found: {source}") from exc
            except OSError as exc:
                raise ImageReadError(f"cannot read {source} ({_reason(exc, source)})") from exc
        try:
            im = _identify(fp, filename, source)
        except ImageReadError:
            raise
        except Exception as exc:  # reading the file, a signature check: anything at all
            raise ImageReadError(f"not a readable image: {_label(source)} ({_reason(exc, source)})") from exc
        with im:
            yield im


def orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8) of an opened image; 1 when absent or invalid."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
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
    if not _is_data(source):
        try:
            fast = fast_header(source)
        except FileNotFoundError as exc:
            raise ImageReadError(f"image file not found: {source}") from exc
        except Exception:  # unreadable or odd: Pillow judges
            fast = None
    if fast is not None:
        w, h, orient = fast
    else:
        try:
            with _opened(source) as im:
                w, h = im.size
                orient = orientation(im)
        except ImageReadError as exc:
            raise _named(exc, source) from exc.__cause__
        except Exception as exc:
            raise ImageReadError(f"not a readable image: {_label(source)} ({_reason(exc, source)})") from exc
    if orient in SWAPS_AXES:
        w, h = h, w
    if w <= 0 or h <= 0:
        raise _named(ImageReadError(f"image header gives an empty size {w}x{h}"), source)
    return w, h


def stored_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of encoded image bytes as stored (before EXIF orientation), from the header only:
    what decoding will allocate, known before any pixel is (the server budgets with it)."""
    with _opened(data) as im:
        w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageReadError(f"image header gives an empty size {w}x{h}")
    return w, h


def _read_jpeg_fast(data: bytes) -> np.ndarray | None:
    """Decode a plain JPEG (1 or 3 components, complete up to its EOI marker) with the fast decoder,
    EXIF orientation applied as Pillow does; None to let Pillow handle anything else."""
    dec = cached_jpeg_decoder()
    if dec is None or data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None
    info: dict[str, int] = {}
    head = jpeg_header(HeaderBuffer(None, data), info)
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
    op = ORIENT_OPS.get(orient)
    return np.ascontiguousarray(op(rgb)) if op else np.ascontiguousarray(rgb)


def read_image(source: ImageSource) -> np.ndarray:
    """Decode fully to an ``HxWx3`` uint8 RGB array with EXIF orientation applied (first frame only). Plain
    JPEGs go through the fastest installed decoder (pixel-identical to Pillow's libjpeg-turbo), the rest
    through Pillow. Any failure is an :class:`ImageReadError`, whose message names the file of a path."""
    try:
        return _read_image(source)
    except ImageReadError as exc:
        error = exc
    except Image.DecompressionBombError as exc:
        error = _bomb(exc)
    except Exception as exc:  # whatever a decoder raises: NotImplementedError, MemoryError, struct.error, ...
        error = ImageReadError(f"corrupt image data ({_reason(exc, source)})")
        error.__cause__ = exc
    raise _named(error, source)


def _named(error: ImageReadError, source: ImageSource) -> ImageReadError:
    """``error`` with the file in front when ``source`` is a path that its message does not name yet (bytes
    are never named: the server's messages hold no paths)."""
    if _is_data(source) or str(source) in str(error):
        return error
    named = ImageReadError(f"{source}: {error}")
    named.__cause__ = error.__cause__
    return named


def _read_image(source: ImageSource) -> np.ndarray:
    data = source if isinstance(source, bytes) else None
    if data is None and str(source).lower().endswith((".jpg", ".jpeg", ".jpe", ".jfif")):
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError as exc:
            raise ImageReadError(f"image file not found: {source}") from exc
        except OSError as exc:
            raise ImageReadError(f"cannot read {source} ({_reason(exc, source)})") from exc
    if data is not None:
        fast = _read_jpeg_fast(data)
        if fast is not None:
            return fast
    with _opened(source, data) as im:
        try:
            im.seek(0)  # the first frame (already current after opening: no other frame is read)
            im.load()
            return to_rgb_array(im, orientation(im))
        except (ImageReadError, Image.DecompressionBombError):
            raise
        except Exception as exc:
            raise ImageReadError(f"corrupt image data ({_reason(exc, source)})") from exc


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
        try:
            return to_rgb_array(image, orientation(image))
        except Image.DecompressionBombError as exc:
            raise _bomb(exc) from None
        except Exception as exc:  # a lazily loaded file that turns out corrupt, an unconvertible mode
            raise ImageReadError(f"corrupt image data ({_reason(exc, b'')})") from exc
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
