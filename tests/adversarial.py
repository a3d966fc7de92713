"""An adversarial corpus against ``speedmap serve`` and the runner that sends it.

:func:`corpus` returns named cases, the same for the same seed: an :class:`HttpCase` is one HTTP request
whose request target goes on the wire verbatim (so ``../`` and ``%2e%2e`` reach the server as written); a
:class:`RawCase` is bytes on a socket, with delays between chunks, for what an HTTP client cannot send
(HTTP/0.9, bad chunking, huge headers, slow drips, a client hanging up mid-upload).

Every case's expected property is simple. An HTTP case gets a status below 500 within its deadline, and
a ``deny`` case (a missing or wrong key on a protected route) is not accepted. A raw case gets a 4xx or
a closed connection within its deadline. :func:`run_corpus` sends the cases a few at a time, checks every
response for leaks (paths, tracebacks, the API key) and calls a checkpoint every ``every`` cases, where
the caller sends valid requests and compares their answers.

Used by ``tests/test_serve_fuzz.py`` (a few hundred cases) and ``benchmarks/bench_fuzz.py`` (thousands).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.server
import io
import random
import re
import select
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

DEADLINE_S = 35.0  # hard cap on any one HTTP request
RAW_DEADLINE_S = 15.0  # a raw connection is answered or closed within this (the server closes slow ones in ~10 s)
MODEL_ID = "shapes/1"

# ---------------------------------------------------------------------------------------------- cases


@dataclass
class HttpCase:
    name: str
    method: str
    target: str  # request target, sent verbatim: path and query, visible ASCII (h11 refuses anything else)
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    deny: bool = False  # sent without a valid key to a protected route: any 2xx/3xx is a failure
    heavy: bool = False  # decodes a huge image or list: run alone
    deadline: float = DEADLINE_S

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]

    def describe(self) -> str:
        body = "" if self.content is None else f" body {len(self.content)} B {self.content[:60]!r}"
        ctype = self.headers.get("Content-Type", "")
        return f"{self.method} {self.target[:160]}{' [' + ctype[:40] + ']' if ctype else ''}{body}"


@dataclass
class RawCase:
    name: str
    steps: list[tuple[float, bytes]]  # (seconds to wait first, bytes to send)
    expect: str = "reject"  # reject: a 4xx or a close; no5xx: any status below 500 or a close; sent: only sent
    deadline: float = RAW_DEADLINE_S  # from the connect: the server must have answered or closed by then
    rst: bool = False  # hang up with a TCP reset after the steps (expect "sent")
    until_close: bool = False  # an answer is not enough: the server must also close the connection

    heavy = False
    deny = False

    @property
    def group(self) -> str:
        return self.name.split("/", 1)[0]

    def describe(self) -> str:
        sent = sum(len(b) for _, b in self.steps)
        drip = sum(d for d, _ in self.steps)
        head = self.steps[0][1][:80] if self.steps else b""
        return f"raw {sent} B in {len(self.steps)} chunk(s) over {drip:g} s: {head!r}"


Case = HttpCase | RawCase


# ---------------------------------------------------------------------------------------------- images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_zeros(w: int, h: int, depth: int = 8, color: int = 0) -> bytes:
    """A real PNG of ``w`` x ``h`` zero pixels, compressed by hand row by row (10000x10000 1-bit: 12 KB)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = b"\x00" * (1 + (w * channels * depth + 7) // 8)
    comp, parts = zlib.compressobj(9), []
    block = row * max(1, (1 << 20) // len(row))
    rows_per_block = len(block) // len(row)
    done = 0
    while done < h:
        k = min(rows_per_block, h - done)
        parts.append(comp.compress(block if k == rows_per_block else row * k))
        done += k
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    plte = _chunk(b"PLTE", b"\x00\x00\x00") if color == 3 else b""
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_header(w: int, h: int, depth: int = 8, color: int = 2) -> bytes:
    """A PNG whose header claims ``w`` x ``h`` with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def gif_header(w: int, h: int) -> bytes:
    """A GIF whose screen and frame claim ``w`` x ``h``, with one LZW byte of data."""
    screen = struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def webp_header(w: int, h: int, vp8x: bool = True) -> bytes:
    """A WebP whose VP8X canvas and VP8L bitstream claim ``w`` x ``h`` (at most 16384)."""
    bits = (min(w, 16384) - 1) | ((min(h, 16384) - 1) << 14)
    data = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunks = b"VP8L" + struct.pack("<I", len(data)) + data
    if vp8x:
        canvas = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        chunks = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + canvas + chunks
    body = b"WEBP" + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_header(w: int, h: int, compression: int = 8) -> bytes:
    """A little-endian TIFF whose single strip claims ``w`` x ``h`` 8-bit grey pixels."""
    data = zlib.compress(b"\x00" * 256)
    tags = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, 8),
        (259, 3, compression),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 4, h),
        (279, 4, len(data)),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    offset = 8 + ifd_size
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    for tag, typ, value in tags:
        value = offset if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    return out + b"\x00\x00\x00\x00" + data


def jpeg_header(w: int, h: int, eoi: bool = True) -> bytes:
    """A JPEG whose frame header claims ``w`` x ``h`` (at most 65535), with no real scan."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x00\x03\x00\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x00" * 32 + (b"\xff\xd9" if eoi else b"")


def bmp_header(w: int, h: int, bpp: int = 24) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 64, 0, 0, 14 + len(dib)) + dib + b"\x00" * 64


def dds_header(w: int, h: int, fourcc: bytes = b"DXT1", data: int = 192, dx10: int | None = None) -> bytes:
    """A DDS file (the 320-byte one: 4096x4096 DXT1 claimed, 192 bytes of blocks)."""
    pf = struct.pack("<II4sIIIII", 32, 0x4, fourcc, 0, 0, 0, 0, 0)
    head = struct.pack("<IIIIIII", 124, 0x1007 | 0x80000, h, w, 0, 0, 0) + b"\x00" * 44 + pf
    head += struct.pack("<IIIII", 0x1000, 0, 0, 0, 0)
    extra = struct.pack("<IIIII", dx10, 3, 0, 1, 0) if dx10 is not None else b""
    return b"DDS " + head + extra + b"\x00" * data


def ico_with(png: bytes, w: int = 0, h: int = 0) -> bytes:
    entry = struct.pack("<BBBBHHII", w, h, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def _pil(mode: str, size: tuple[int, int], fmt: str, color: Any = 0, **kw: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt, **kw)
    return buf.getvalue()


def noise_jpeg(w: int = 64, h: int = 64, seed: int = 0, **kw: Any) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", **kw)
    return buf.getvalue()


def tiny_png() -> bytes:
    """The smallest valid image we send in bulk (1x1 grey PNG)."""
    return png_of_zeros(1, 1)


@cache
def real_bombs() -> dict[str, bytes]:
    """Small files that decode to 10000x10000 (100 MP, exactly the server's default pixel limit) or more."""
    out = {
        "png-1bit-10000": png_of_zeros(10000, 10000, depth=1),
        "png-grey-10000": png_of_zeros(10000, 10000, depth=8),
        "png-palette-10000": png_of_zeros(10000, 10000, depth=1, color=3),
        "gif-10000": _pil("P", (10000, 10000), "GIF"),
        "tiff-g4-10000": _pil("1", (10000, 10000), "TIFF", compression="group4"),
        "webp-lossless-10000": _pil("L", (10000, 10000), "WEBP", lossless=True, method=0, quality=0),
        "jpeg-10000": _pil("L", (10000, 10000), "JPEG", quality=1),
        "png-1bit-20000x5000": png_of_zeros(20000, 5000, depth=1),
    }
    return out


def header_bombs() -> dict[str, bytes]:
    """Headers that claim huge images, with (almost) no pixel data."""
    return {
        "png-16384": png_header(16384, 16384),
        "png-100000": png_header(100000, 100000),
        "png-2^31-1": png_header(2**31 - 1, 2**31 - 1),
        "png-1-bit-65535": png_header(65535, 65535, depth=1, color=0),
        "png-0x0": png_header(0, 0),
        "gif-65535": gif_header(65535, 65535),
        "gif-16384": gif_header(16384, 16384),
        "webp-vp8x-16384": webp_header(16384, 16384),
        "webp-vp8l-16384": webp_header(16384, 16384, vp8x=False),
        "webp-vp8x-2^24": webp_header(2**24, 2**24),
        "tiff-100000": tiff_header(100000, 100000),
        "tiff-16384": tiff_header(16384, 16384, compression=1),
        "jpeg-65535": jpeg_header(65535, 65535),
        "jpeg-65535-no-eoi": jpeg_header(65535, 65535, eoi=False),
        "jpeg-0x0": jpeg_header(0, 0),
        "bmp-50000": bmp_header(50000, 50000),
        "bmp-negative": bmp_header(50000, -50000),
        "psd-30000": b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 30000, 30000, 8, 3) + b"\x00" * 64,
        "ppm-50000": b"P6\n50000 50000\n255\n" + b"\x00" * 64,
        "pgm-ascii-huge": b"P2\n99999 99999\n65535\n1 2 3\n",
        "qoi-huge": b"qoif" + struct.pack(">II", 40000, 40000) + b"\x03\x00" + b"\x00" * 32,
        "dds-320-bytes": dds_header(4096, 4096),
        "dds-16384-dxt5": dds_header(16384, 16384, b"DXT5"),
        "dds-dx10-bc7": dds_header(16384, 16384, b"DX10", dx10=98),
        "dds-zero": dds_header(0, 0),
        "ico-header-only": ico_with(png_header(16384, 16384)),
        "eps-bbox": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100000 100000\n%%EndComments\nshowpage\n",
        "eps-dos-binary": b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIIIH", 30, 2**31, 0, 0, 0, 0, 0xFFFF),
        "xbm-huge": b"#define x_width 100000\n#define x_height 100000\nstatic char x_bits[] = {0x00};\n",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"/>',
        "heic-ftyp": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
        "jp2-header": b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x14ftypjp2 " + b"\x00" * 64,
    }


@cache
def format_samples() -> dict[str, bytes]:
    """An 8x8 picture in every format this Pillow can write (each a decoder the server may reach)."""
    from PIL import Image

    Image.init()
    out = {}
    for fmt in sorted(Image.SAVE):
        mode = "1" if fmt in ("XBM", "MSP") else "RGB"
        try:
            out[fmt.lower()] = _pil(mode, (8, 8), fmt, color=1 if mode == "1" else (10, 200, 30))
        except Exception:  # a save handler not installed, or a mode the format cannot hold
            continue
    out["png-16bit"] = _pil("I;16", (8, 8), "PNG", color=30000)
    out["png-la"] = _pil("LA", (8, 8), "PNG", color=(1, 2))
    out["png-palette-trns"] = _pil("P", (8, 8), "PNG", transparency=0)
    out["jpeg-cmyk"] = _pil("CMYK", (8, 8), "JPEG")
    out["jpeg-progressive"] = noise_jpeg(32, 32, progressive=True)
    out["gif-animated"] = _animated_gif()
    out["png-65000x1"] = png_of_zeros(65000, 1)
    out["png-1x65000"] = png_of_zeros(1, 65000)
    out["png-1x1"] = tiny_png()
    out["tiff-float"] = _pil("F", (8, 8), "TIFF")
    out["tiff-i32"] = _pil("I", (8, 8), "TIFF")
    for orient in (6, 9, 0, 65535):
        out[f"jpeg-exif-orientation-{orient}"] = _exif_jpeg(orient)
    out["jpeg-huge-exif"] = noise_jpeg(16, 16, exif=b"Exif\x00\x00" + b"MM\x00*" + b"\xff" * 60000)
    return out


def _animated_gif() -> bytes:
    from PIL import Image

    frames = [Image.new("P", (16, 16), i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10, loop=0)
    return buf.getvalue()


def _exif_jpeg(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return noise_jpeg(24, 16, exif=exif.tobytes())


def broken_images(good: bytes) -> dict[str, bytes]:
    """Truncated and corrupt versions of a good JPEG and PNG."""
    png = _pil("RGB", (32, 32), "PNG", color=(200, 10, 10))
    out = {f"jpeg-cut-{n}": good[:n] for n in (2, 10, 100, len(good) // 2, len(good) - 2)}
    out |= {f"png-cut-{n}": png[:n] for n in (8, 33, len(png) // 2, len(png) - 12)}
    flipped = bytearray(good)
    for i in range(len(good) // 3, len(good) - 4, max(1, len(good) // 40)):
        flipped[i] ^= 0xFF
    out["jpeg-scan-flipped"] = bytes(flipped)
    out["jpeg-header-flipped"] = good[:4] + bytes(b ^ 0x55 for b in good[4:200]) + good[200:]
    out["jpeg-doubled"] = good + good
    out["jpeg-trailing-garbage"] = good + b"\x00garbage" * 1000
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF
    out["png-bad-crc"] = bytes(bad_crc)
    out["png-no-iend"] = png[:-12]
    out["png-idat-garbage"] = png[:33] + _chunk(b"IDAT", b"\x78\x9c" + b"\xff" * 100) + _chunk(b"IEND", b"")
    out["png-zlib-bomb-idat"] = (
        png[:33] + _chunk(b"IDAT", zlib.compress(b"\x00" * (50 << 20), 9)) + _chunk(b"IEND", b"")
    )
    out["zeros"] = b"\x00" * 1000
    out["one-byte"] = b"\xff"
    out["text"] = b"hello, I am not an image"
    out["gzip-of-jpeg"] = gzip.compress(good)
    return out


# ---------------------------------------------------------------------------------------------- building blocks


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def target(path: str, params: Iterable[tuple[str, Any]] | dict[str, Any] = ()) -> str:
    """``path?query``: the query percent-encoded (any character), the path left as written."""
    items = list(params.items() if isinstance(params, dict) else params)
    return path + ("?" + urlencode([(k, str(v)) for k, v in items], quote_via=quote, safe="") if items else "")


def json_text(doc: dict[str, Any], literals: dict[str, str] | None = None) -> bytes:
    """JSON of ``doc`` where the values of the fields in ``literals`` are raw JSON text (NaN, 1e999...)."""
    doc = dict(doc)
    for k in literals or {}:
        doc[k] = f"@@{k}@@"
    text = orjson.dumps(doc).decode()
    for k, lit in (literals or {}).items():
        text = text.replace(f'"@@{k}@@"', lit)
    return text.encode()


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# JSON values of every type for every field (raw JSON text)
ODD_JSON = {
    "null": "null",
    "true": "true",
    "false": "false",
    "zero": "0",
    "minus-one": "-1",
    "one": "1",
    "two": "2",
    "half": "0.5",
    "1e308": "1e308",
    "-1e308": "-1e308",
    "1e999": "1e999",
    "bigint": "1" + "0" * 40,
    "2^63": "9223372036854775808",
    "NaN": "NaN",
    "Infinity": "Infinity",
    "-Infinity": "-Infinity",
    "str-abc": '"abc"',
    "str-empty": '""',
    "str-0.5": '"0.5"',
    "str-nan": '"nan"',
    "str-inf": '"inf"',
    "str-1e30": '"1e30"',
    "str-false": '"false"',
    "str-yes": '"yes"',
    "str-nul": '"a\\u0000b"',
    "str-surrogate": '"\\ud800"',
    "str-100k": '"' + "x" * 100_000 + '"',
    "list": "[]",
    "list-1": "[1]",
    "list-str": '["a", "b"]',
    "dict": "{}",
    "dict-1": '{"a": 1}',
    "nested": "[" * 50 + "1" + "]" * 50,
}
V1_FIELDS = [
    "model_id",
    "image",
    "confidence",
    "iou_threshold",
    "max_detections",
    "class_filter",
    "class_agnostic_nms",
    "visualize_predictions",
    "api_key",
    "overlap",
    "disable_active_learning",
]
# the same for query parameters (text)
ODD_TEXT = [
    "",
    "abc",
    "-1",
    "0",
    "1",
    "2",
    "100",
    "101",
    "0.5",
    "1e308",
    "1e309",
    "inf",
    "-inf",
    "nan",
    "Infinity",
    "1_0",
    "0x10",
    " 0.5 ",
    "9" * 400,
    "1.5",
    "\x00",
    "a" * 10_000,
    "%",
    "[1]",
    "true",
    "3000000000",
    "-0",
    "1e-320",
    "\u0661",
    "\u0661\u0660",
]
LEGACY_PARAMS = [
    "confidence",
    "overlap",
    "max_detections",
    "classes",
    "format",
    "labels",
    "stroke",
    "name",
    "image",
    "api_key",
]

TRAVERSAL_IDS = [
    "../../etc/passwd",
    "shapes/../../1",
    "shapes/1/../../../x",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "shapes/1\x00",
    "shapes/1\n",
    "shapes/1\r\nX-Injected: 1",
    "a" * 300 + "/1",
    "shapes/" + "1" * 300,
    "shapes/.",
    "./1",
    "shapes/1/",
    "~root/1",
    "C:\\x/1",
    "shapes/1\u2215..",
    "%2e%2e/%2e%2e",
    "shapes/%2e%2e",
    "shapes/1/model.onnx",
    "shapes",
    "",
    "/",
    "shapes//1",
    " shapes/1",
    "shapes/1 ",
    "SHAPES/1",
    "shapes/1\t",
    "shapes/01",
    "shapes/1.",
    "\u0455hapes/1",
]
LEGACY_TRAVERSAL = [
    "/..%2F..%2Fetc/passwd",
    "/%2e%2e/%2e%2e",
    "/%2e%2e%2f%2e%2e%2fetc/passwd",
    "/%252e%252e%252f/x",
    "/%252e%252e%252fetc/passwd",
    "/shapes/1%00",
    "/shapes/1%0a",
    "/shapes/1%0d%0aX-Injected:%201",
    "/shapes%5c..%5c/1",
    "/..%5c..%5cetc/passwd",
    "/" + "a" * 300 + "/1",
    "/shapes/" + "1" * 300,
    "/shapes/%2e",
    "/%2e/1",
    "/shapes/1%2f..%2f..",
    "/shapes/..%c0%af..",
    "/shapes/%c0%ae%c0%ae",
    "/shapes/1;x",
    "/shapes/1%20",
    "/shapes/%ff%fe",
    "/shapes/%",
    "/shapes/%zz",
]
WEB_TRAVERSAL = [
    "/web/shapes/1/../../../../etc/passwd",
    "/web/shapes/1/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/web/shapes/1/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/web/shapes/1/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/web/shapes/1/..\\..\\..\\etc\\passwd",
    "/web/shapes/1/..%5c..%5c..%5cetc%5cpasswd",
    "/web/shapes/1/index.html%00.js",
    "/web/shapes/1/model.json%00",
    "/web/shapes/1/vendor/../../../model.json",
    "/web/shapes/1/vendor/..%2f..%2f..%2fpyproject.toml",
    "/web/shapes/1/%2fetc%2fpasswd",
    "/web/shapes/1//etc/passwd",
    "/web/shapes/1/..%c0%af..%c0%afetc/passwd",
    "/web/..%2f..%2fetc/passwd/index.html",
    "/web/shapes/..%2f1/index.html",
    "/web/%2e%2e/%2e%2e/index.html",
    "/web/shapes/1%0a/index.html",
    "/web/shapes/1/index.html%0a",
    "/web/" + "a" * 300 + "/1/index.html",
    "/web/shapes/1/" + "a" * 5000,
    "/web/shapes/1/model.onnx/..",
    "/web/shapes/1/.",
    "/web/shapes/1/vendor/",
    "/web/shapes/1/vendor/manifest.json/x",
    "/web/shapes/1/%2e%2e%2fmodel.json",
    "/web/shapes/1/app.js?x=../../etc/passwd",
]

URLS = [
    "file:///etc/passwd",
    "file://example.invalid/etc/passwd",
    "gopher://example.invalid:70/_x",
    "ftp://example.invalid/a.jpg",
    "dict://example.invalid:11211/stat",
    "ldap://example.invalid/",
    "jar:http://example.invalid/a.jar!/",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
    "http:/example.invalid/a.jpg",
    "//example.invalid/a.jpg",
    "example.invalid/a.jpg",
    "http://",
    "http:///a.jpg",
    "http://example.invalid@127.0.0.1/",
    "http://127.0.0.1#@example.invalid/",
    "http://127.0.0.1\\@example.invalid/",
    "http://example.invalid\\@127.0.0.1/",
    "http://127.0.0.1/",
    "http://127.1/",
    "http://[::1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1%25eth0]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/",
    "http://example.invalid.evil.test/a.jpg",
    "http://evilexample.invalid/a.jpg",
    "http://sub.example.invalid/a.jpg",
    "http://a.b.c.example.invalid/a.jpg",
    "http://example.invalid:22/a.jpg",
    "http://example.invalid:0/a.jpg",
    "http://example.invalid:99999/a.jpg",
    "http://example.invalid:-1/",
    "http://exa mple.invalid/",
    "http://example.invalid/" + "a" * 20_000,
    "https://example.invalid/a.jpg",
    "HTTP://EXAMPLE.INVALID/a.jpg",
    "http://example.invalid%00.evil.test/",
    "http://example.invalid\n.evil.test/",
    "http://xn--exmple-cua.invalid/",
    "http://ex\u0430mple.invalid/",
    "http://example.invalid./a.jpg",
    "",
    " ",
    "http://[::1",
    "http://[zz]/",
    "http://example.invalid/a.jpg#frag",
    "http://user:pass@example.invalid/a.jpg",
    "ws://example.invalid/",
]


# ---------------------------------------------------------------------------------------------- the corpus


class _Builder:
    def __init__(self, key: str, model_id: str, image: bytes) -> None:
        self.key, self.model_id, self.image = key, model_id, image
        self.image_b64 = b64(image)
        self.cases: list[Case] = []
        self.names: Counter[str] = Counter()

    def add(self, case: Case) -> None:
        self.names[case.name] += 1
        if self.names[case.name] > 1:
            case.name = f"{case.name}#{self.names[case.name]}"
        self.cases.append(case)

    def http(
        self,
        name: str,
        method: str,
        tgt: str,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> None:
        if isinstance(content, str):
            content = content.encode()
        self.add(HttpCase(name, method, tgt, dict(headers or {}), content, **kw))

    # the common requests, authorised, with a part replaced
    def legacy(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        method: str = "POST",
        **kw: Any,
    ) -> None:
        q = {"api_key": self.key, **(params or {})}
        self.http(
            name,
            method,
            target(path or f"/{self.model_id}", {k: v for k, v in q.items() if v is not None}),
            self.image_b64 if body is None and method == "POST" else body,
            headers or TEXT,
            **kw,
        )

    def v1(
        self,
        name: str,
        doc: dict[str, Any] | None = None,
        literals: dict[str, str] | None = None,
        drop: tuple[str, ...] = (),
        path: str = "/infer/object_detection",
        **kw: Any,
    ) -> None:
        full = {
            "model_id": self.model_id,
            "image": {"type": "base64", "value": self.image_b64},
            "api_key": self.key,
            **(doc or {}),
        }
        for k in drop:
            full.pop(k, None)
        self.http(name, "POST", path, json_text(full, literals), JSON, **kw)

    def image_via(self, name: str, blob: bytes, how: str, heavy: bool = False) -> None:
        enc = b64(blob)
        if how == "b64":
            self.legacy(f"{name}/b64", body=enc, heavy=heavy)
        elif how == "raw":
            self.legacy(f"{name}/raw", body=blob, headers={"Content-Type": "application/octet-stream"}, heavy=heavy)
        elif how == "v1":
            self.v1(f"{name}/v1", {"image": {"type": "base64", "value": enc}}, heavy=heavy)
        elif how == "multipart":
            ctype, body = multipart([("file", "a.jpg", "image/jpeg", blob)])
            self.legacy(f"{name}/multipart", body=body, headers={"Content-Type": ctype}, heavy=heavy)
        elif how == "annotate":
            self.legacy(f"{name}/format-image", {"format": "image", "confidence": 0.01}, body=enc, heavy=heavy)


def multipart(
    parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "fuzzb0undary"
) -> tuple[str, bytes]:
    out = b""
    for name, filename, ctype, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        out += (f"Content-Type: {ctype}\r\n" if ctype else "").encode() + b"\r\n" + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


# The key policy (README): with --api-key every route but the open ones needs the key, model management
# included; the page's cookie holds a token derived from the key, so a cookie with the key itself (or a
# wrong one) is no key. Every variant below is refused.
def _auth_cases(b: _Builder, full: bool) -> None:
    key, mid = b.key, b.model_id
    body_v1 = {"model_id": mid, "image": {"type": "base64", "value": b.image_b64}}
    protected = {  # name: (method, path, JSON body or raw body or None)
        "registry": ("GET", "/model/registry", None),
        "add": ("POST", "/model/add", {"model_id": mid}),
        "remove": ("POST", "/model/remove", {"model_id": "nope/1"}),
        "clear": ("POST", "/model/clear", {}),
        "v1": ("POST", "/infer/object_detection", body_v1),
        "legacy": ("POST", f"/{mid}", b.image_b64),
        "legacy-get-url": ("GET", target(f"/{mid}", {"image": "http://example.invalid/a.jpg"}), None),
        "web-index": ("GET", f"/web/{mid}/index.html", None),
        "web-model": ("GET", f"/web/{mid}/model.json", None),
    }
    wrong_same_len = "x" * len(key)
    variants: dict[str, tuple[dict[str, str], dict[str, str]]] = {  # name: (query, headers)
        "missing": ({}, {}),
        "empty": ({"api_key": ""}, {}),
        "wrong": ({"api_key": "wrong"}, {}),
        "wrong-same-length": ({"api_key": wrong_same_len}, {}),
        "trailing-space": ({"api_key": key + " "}, {}),
        "trailing-newline": ({"api_key": key + "\n"}, {}),
        "prefix": ({"api_key": key[:-1]}, {}),
        "upper": ({"api_key": key.upper()}, {}),
        "nul": ({"api_key": key + "\x00"}, {}),
        "unicode": ({"api_key": "ключ-\u202e"}, {}),
        "100kb": ({"api_key": "k" * 100_000}, {}),
        "bearer-wrong": ({}, {"Authorization": "Bearer wrong"}),
        "bearer-only": ({}, {"Authorization": "Bearer"}),
        "basic": ({}, {"Authorization": "Basic " + b64(f"{key}:".encode())}),
        "no-scheme": ({}, {"Authorization": key}),
        "cookie": ({}, {"Cookie": f"speedmap_api_key={key}"}),
        "cookie-wrong": ({}, {"Cookie": "speedmap_api_key=wrong"}),
    }
    core_variants = ["missing", "empty", "wrong"]
    for rname, (method, path, body) in protected.items():
        for vname, (query, headers) in variants.items():
            if not full and vname not in core_variants and rname not in ("v1", "legacy", "web-index", "registry"):
                continue
            deny = True
            sep = "&" if "?" in path else "?"
            tgt = path + (sep + urlencode(query, quote_via=quote, safe="") if query else "")
            hdrs = dict(headers)
            if isinstance(body, dict):
                b.http(f"auth/{rname}/{vname}", method, tgt, orjson.dumps(body), {**JSON, **hdrs}, deny=deny)
            else:
                b.http(f"auth/{rname}/{vname}", method, tgt, body, {**TEXT, **hdrs} if body else hdrs, deny=deny)
    # api_key of every JSON type in the body, on every JSON route
    for rname in ("v1", "add", "clear", "remove") if full else ("v1", "add"):
        method, path, body = protected[rname]
        assert isinstance(body, dict)
        for lit in ("12345", "1.5", "true", "null", f'["{key}"]', f'{{"key": "{key}"}}', '""', "[]"):
            deny = True
            b.http(
                f"auth/{rname}/json-api-key-{lit[:12]}",
                method,
                path,
                json_text({**body, "api_key": 0}, {"api_key": lit}),
                JSON,
                deny=deny,
            )
    # open routes answer without a key, and a key changes nothing
    for path in ("/healthz", "/info", "/metrics", "/readiness", "/docs", "/openapi.json", "/docs/oauth2-redirect"):
        b.http(f"auth/open{path}/missing", "GET", path)
        b.http(f"auth/open{path}/wrong", "GET", target(path, {"api_key": "wrong"}))
    # the web page's redirect must not echo the key in Location
    b.http("auth/web-root-redirect-key", "GET", target(f"/web/{mid}", {"api_key": key}))
    b.http("auth/web-root-redirect-key-extra", "GET", target(f"/web/{mid}", {"api_key": key, "x": "1"}))
    b.http("auth/web-root-redirect-missing", "GET", f"/web/{mid}")
    b.http("auth/web-index-query-key", "GET", target(f"/web/{mid}/index.html", {"api_key": key}))
    # right key in the body, wrong in the query (and the reverse); the key twice
    b.http(
        "auth/v1-wrong-query-right-body",
        "POST",
        target("/infer/object_detection", {"api_key": "wrong"}),
        orjson.dumps({**body_v1, "api_key": key}),
        JSON,
    )
    b.http("auth/legacy-key-twice", "POST", f"/{mid}?api_key=wrong&api_key={quote(key)}", b.image_b64, TEXT)
    b.http("auth/legacy-key-twice-wrong-last", "POST", f"/{mid}?api_key={quote(key)}&api_key=wrong", b.image_b64, TEXT)


def _traversal_cases(b: _Builder) -> None:
    bearer = {"Authorization": f"Bearer {b.key}"}
    for mid in TRAVERSAL_IDS:
        b.v1(f"traversal/v1-model-id/{mid[:40]!r}", {"model_id": mid})
        b.http(
            f"traversal/add-model-id/{mid[:40]!r}",
            "POST",
            "/model/add",
            orjson.dumps({"model_id": mid}),
            {**JSON, **bearer},
        )
        b.http(
            f"traversal/remove-model-id/{mid[:40]!r}",
            "POST",
            "/model/remove",
            orjson.dumps({"model_id": mid}),
            {**JSON, **bearer},
        )
    for path in LEGACY_TRAVERSAL:
        b.legacy(f"traversal/legacy-path/{path[:40]}", path=path)
        b.legacy(
            f"traversal/legacy-path-get/{path[:40]}", {"image": "http://example.invalid/a.jpg"}, path=path, method="GET"
        )
    for path in WEB_TRAVERSAL:
        b.http(f"traversal/web/{path[:60]}", "GET", path, headers=bearer)
        b.http(
            f"traversal/web-query-key/{path[:60]}",
            "GET",
            path + ("&" if "?" in path else "?") + urlencode({"api_key": b.key}),
            headers={},
        )


def _image_cases(b: _Builder, full: bool, heavy_lists: bool) -> None:
    hows = ["b64", "raw", "v1", "multipart", "annotate"]
    for i, (name, blob) in enumerate(header_bombs().items()):
        for how in hows if full else sorted({hows[i % len(hows)], "b64"}):
            b.image_via(f"image/header-bomb/{name}", blob, how)
    for i, (name, blob) in enumerate(real_bombs().items()):
        for how in hows if full else [hows[i % 4]]:
            b.image_via(f"image/real-bomb/{name}", blob, how, heavy=True)
    bombs = real_bombs()
    b.v1("image/real-bomb/v1-list-of-2", {"image": [b64(bombs["png-1bit-10000"])] * 2}, heavy=True)
    if heavy_lists:
        b.v1("image/real-bomb/v1-list-of-4", {"image": [b64(bombs["png-1bit-10000"])] * 4}, heavy=True)
        b.v1(
            "image/real-bomb/v1-list-mixed",
            {"image": [b64(x) for k, x in bombs.items() if "jpeg" not in k]},
            heavy=True,
        )
    b.image_via("image/real-bomb/ico-with-png-bomb", ico_with(bombs["png-1bit-10000"]), "b64", heavy=True)
    for i, (name, blob) in enumerate(format_samples().items()):
        for how in hows if full else [hows[i % len(hows)]]:
            b.image_via(f"image/format/{name}", blob, how)
    for i, (name, blob) in enumerate(broken_images(b.image).items()):
        for how in hows if full else [hows[i % len(hows)]]:
            b.image_via(f"image/broken/{name}", blob, how)
    for name, blob in format_samples().items():
        b.image_via(f"image/format-cut/{name}", blob[: len(blob) // 2], "b64")


def _body_cases(b: _Builder) -> None:
    raw64, img = b.image_b64, b.image
    for ctype in (
        "image/jpeg",
        "application/octet-stream",
        "application/json",
        "text/html",
        "application/xml",
        "",
        "garbage/;;;;",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "text/plain; charset=utf-16",
        "application/x-www-form-urlencoded; charset=ebcdic",
        "a" * 10_000,
        "image/png\x7f",
        "application/json; boundary=x",
    ):
        b.legacy(f"body/b64-as/{ctype[:40]}", body=raw64, headers={"Content-Type": ctype})
    for ctype in ("text/plain", "application/json", "application/x-www-form-urlencoded", "multipart/form-data"):
        b.legacy(f"body/raw-jpeg-as/{ctype}", body=img, headers={"Content-Type": ctype})
    b.legacy("body/utf16-b64", body=raw64.encode("utf-16"), headers={"Content-Type": "text/plain"})
    b.legacy("body/empty", body=b"")
    b.legacy("body/whitespace", body=b" \r\n\t" * 1000)
    b.legacy("body/over-limit-5mb", body=b"A" * (5 << 20))
    b.legacy("body/just-under-limit-base64-junk", body=b"A" * ((4 << 20) - 4096))
    b.legacy("body/form-image-bad-escape", body=b"image=%zz%", headers=FORM)
    b.legacy("body/form-image-empty", body=b"image=", headers=FORM)
    b.legacy("body/form-other-field", body=b"foo=" + raw64.encode(), headers=FORM)
    b.legacy("body/json-image-number", body=b'{"image": 5}', headers=JSON)
    b.legacy("body/json-image-list", body=orjson.dumps({"image": [raw64] * 3}), headers=JSON)
    b.legacy("body/json-array", body=b"[1, 2]", headers=JSON)
    b.legacy("body/json-string-garbage", body=b'"%%%"', headers=JSON)
    b.legacy(
        "body/json-url-image",
        body=orjson.dumps({"image": {"type": "url", "value": "file:///etc/passwd"}}),
        headers=JSON,
    )
    b.legacy(
        "body/content-encoding-gzip",
        body=gzip.compress(raw64.encode()),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    b.legacy(
        "body/content-encoding-gzip-bomb",
        body=gzip.compress(b"A" * (64 << 20), 9),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    b.legacy("body/expect-100", headers={"Content-Type": "text/plain", "Expect": "100-continue"})
    b.legacy("body/get-with-body", method="GET", body=raw64)
    # multipart
    parts = {
        "valid": [("file", "a.jpg", "image/jpeg", img)],
        "other-name": [("upload", "a.jpg", "image/jpeg", img)],
        "text-field-b64": [("file", None, None, raw64.encode())],
        "text-field-garbage": [("file", None, None, b"%%%")],
        "empty-file": [("file", "a.jpg", "image/jpeg", b"")],
        "no-parts": [],
        "traversal-filename": [("file", "../../../../etc/passwd", "image/jpeg", img)],
        "nul-filename": [("file", "a\x00.jpg", "image/jpeg", img)],
        "huge-filename": [("file", "a" * 100_000, "image/jpeg", img)],
        "1000-parts": [(f"f{i}", None, None, b"x") for i in range(1000)] + [("file", "a.jpg", "image/jpeg", img)],
        "1000-files": [("file", f"{i}.jpg", "image/jpeg", b"x") for i in range(1000)],
        "bomb-file": [("file", "a.png", "image/png", png_header(100000, 100000))],
    }
    for name, ps in parts.items():
        ctype, body = multipart(ps)
        b.legacy(f"body/multipart/{name}", body=body, headers={"Content-Type": ctype})
    ctype, body = multipart([("file", "a.jpg", "image/jpeg", img)], boundary="b" * 1000)
    b.legacy("body/multipart/1000-char-boundary", body=body, headers={"Content-Type": ctype})
    b.legacy(
        "body/multipart/missing-close",
        body=b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + img,
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    b.legacy(
        "body/multipart/broken", body=b"--xx\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=xx"}
    )
    b.legacy(
        "body/multipart/headers-only",
        body=b"--xx\r\n" + b"X: y\r\n" * 10_000 + b"\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xx"},
    )
    b.legacy(
        "body/multipart/nested",
        body=multipart([("file", "a", "multipart/mixed; boundary=yy", b"--yy\r\n\r\nx\r\n--yy--")])[1],
        headers={"Content-Type": multipart([])[0]},
    )


def _base64_cases(b: _Builder) -> None:
    raw64 = b.image_b64
    bodies = {
        "percent": "%%% not base64 %%%",
        "padding-only": "====",
        "one-char": "A",
        "two-chars": "AB",
        "three": "ABC",
        "bad-padding": raw64[:-2] + "=A",
        "inner-spaces": " ".join(raw64[i : i + 7] for i in range(0, len(raw64), 7)),
        "data-url-only": "data:image/png;base64,",
        "data-url-junk": "data:image/png;base64,%%%",
        "data-url-text": "data:text/plain,hello",
        "url-safe": raw64.replace("+", "-").replace("/", "_"),
        "of-text": b64(b"not an image"),
        "of-empty": "",
        "of-one-byte": b64(b"\xff"),
        "unicode": "ÿÿÿ\u2603",
        "nul": raw64[:100] + "\x00" + raw64[100:],
        "random-3mb": b64(random.Random(1).randbytes(2 << 20)),
        "double-encoded": b64(raw64.encode()),
        "b64-of-b64-data-url": "data:image/jpeg;base64," + b64(raw64.encode()),
        "leading-bom": "\ufeff" + raw64,
        "crlf-every-char": "\r\n".join(raw64[:2000]),
    }
    for name, body in bodies.items():
        b.legacy(f"base64/legacy/{name}", body=body.encode("utf-8", "surrogatepass"))
        b.v1(f"base64/v1/{name}", {"image": {"type": "base64", "value": body}})


def _json_cases(b: _Builder, full: bool) -> None:
    mid = b.model_id
    valid = orjson.dumps({"model_id": mid, "image": {"type": "base64", "value": b.image_b64}, "api_key": b.key})
    bodies = {
        "truncated": valid[: len(valid) // 2],
        "open-brace": b"{",
        "open-bracket": b"[",
        "quote": b'"',
        "empty-value": b'{"a":}',
        "trailing-comma": b'{"model_id": "x",}',
        "single-quotes": b"{'model_id': 'x'}",
        "deep-list-100k": b"[" * 100_000 + b"]" * 100_000,
        "deep-dict-100k": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "unclosed-deep": b"[" * 100_000,
        "huge-exponent": b"1e999999",
        "huge-int": b"1" * 5000,
        "NaN": b"NaN",
        "Infinity": b"Infinity",
        "minus-zero": b"-0",
        "null": b"null",
        "true": b"true",
        "string": b'"str"',
        "array": b"[]",
        "object": b"{}",
        "bom": b"\xef\xbb\xbf" + valid,
        "utf16": valid.decode().encode("utf-16"),
        "invalid-utf8": b'{"model_id": "\xff\xfe"}',
        "lone-surrogate": b'{"model_id": "\\ud800"}',
        "duplicate-keys": b'{"model_id": "x", "model_id": "' + mid.encode() + b'"}',
        "comment": b"// c\n" + valid,
        "whitespace-3mb": b" " * (3 << 20) + valid,
        "nul": valid[:10] + b"\x00" + valid[10:],
        "empty": b"",
        "10k-keys": orjson.dumps({f"k{i}": i for i in range(10_000)} | {"model_id": mid}),
        "garbage-after": valid + b"garbage",
    }
    for name, body in bodies.items():
        b.http(f"json/v1/{name}", "POST", target("/infer/object_detection", {"api_key": b.key}), body, JSON)
        if full or name in ("truncated", "deep-list-100k", "NaN", "huge-int", "invalid-utf8", "string", "array"):
            b.http(f"json/add/{name}", "POST", target("/model/add", {"api_key": b.key}), body, JSON)
            b.legacy(f"json/legacy/{name}", body=body, headers=JSON)


def _field_cases(b: _Builder, full: bool) -> None:
    key, tiny = b.key, b64(tiny_png())
    if full:
        for fname in V1_FIELDS:
            for lname, lit in ODD_JSON.items():
                b.v1(f"field/v1/{fname}={lname}", literals={fname: lit})
            b.v1(f"field/v1/{fname}-missing", drop=(fname,))
        for pname in LEGACY_PARAMS:
            for value in ODD_TEXT:
                extra = {"format": "image", "confidence": "0.01"} if pname in ("stroke", "labels") else {}
                b.legacy(f"field/legacy/{pname}={value[:20]!r}", {**extra, pname: value})
    # the values the issue names, always
    for lit in ("12345", "[1]", "{}", "null"):
        b.v1(f"field/v1/api_key={lit}", literals={"api_key": lit})
    for lit in ('"abc"', "-1", "1e308", "Infinity", "NaN", '"inf"', '"nan"', '"-inf"', "[0.5]", "101", "true"):
        b.v1(f"field/v1/confidence={lit}", literals={"confidence": lit})
        b.v1(f"field/v1/iou_threshold={lit}", literals={"iou_threshold": lit})
    for lit in ("0", "-1", "Infinity", '"inf"', "1e30", '"1e30"', '"x"', "1.5", "9223372036854775808", '"nan"', "true"):
        b.v1(f"field/v1/max_detections={lit}", literals={"max_detections": lit})
    for lit in ('"false"', '"yes"', "2", '"no"', '"0"', "[]", "{}", "-1", '"False"'):
        b.v1(f"field/v1/class_agnostic_nms={lit}", literals={"class_agnostic_nms": lit})
    for lit in ('"yes"', "2", '"true"', "true", "[]"):
        b.v1(f"field/v1/visualize_predictions={lit}", literals={"visualize_predictions": lit})
    for lit in (
        '""',
        '","',
        "[1, null, {}]",
        "5",
        '{"a": 1}',
        json_list([f"c{i}" for i in range(50_000)]),
        '["' + "a" * 100_000 + '"]',
    ):
        b.v1(f"field/v1/class_filter={lit[:30]}", literals={"class_filter": lit})
    images = {
        "number": "5",
        "null": "null",
        "true": "true",
        "empty-list": "[]",
        "nested-list": f'[["{tiny}"]]',
        "dict-no-value": '{"type": "base64"}',
        "dict-value-null": '{"type": "base64", "value": null}',
        "dict-value-number": '{"type": "base64", "value": 5}',
        "dict-value-dict": '{"type": "base64", "value": {}}',
        "type-numpy": '{"type": "numpy", "value": [[1, 2], [3, 4]]}',
        "type-pil": '{"type": "pil", "value": "x"}',
        "type-list": f'{{"type": ["base64"], "value": "{tiny}"}}',
        "type-null": f'{{"type": null, "value": "{tiny}"}}',
        "type-number": f'{{"type": 7, "value": "{tiny}"}}',
        "type-file": '{"type": "file", "value": "/etc/passwd"}',
        "type-url-number": '{"type": "url", "value": 5}',
        "list-of-10k-bad": json_list(["x"] * 10_000),
        "list-of-10k-tiny": json_list([tiny] * 10_000),
        "list-of-100-valid": json_list([b.image_b64] * 100),
        "list-mixed": json_list([tiny, "x", tiny]),
        "string-3.9mb": '"' + "A" * int(3.9 * (1 << 20)) + '"',
    }
    for name, lit in images.items():
        heavy = name.startswith("list-of")
        b.v1(f"field/v1/image={name}", literals={"image": lit}, heavy=heavy)
    if full:
        n = 30_000  # about 3.6 MB of 1x1 PNGs: under a 4 MB body limit
        b.v1(f"field/v1/image=list-of-{n}-tiny", literals={"image": json_list([tiny] * n)}, heavy=True)
    b.v1("field/v1/unknown-fields", {"foo": "bar", "__proto__": {"x": 1}, "constructor": None})
    b.v1("field/v1/no-api-key-field", drop=("api_key",), deny=True)
    # legacy parameters the issue names
    for stroke in ("10000", "1000000", "3000000000", "-1", "0", "1.5", "1e308", "inf", "nan", "x", str(2**63)):
        b.legacy(f"field/legacy/stroke={stroke}", {"format": "image", "confidence": "0.01", "stroke": stroke})
    for labels in ("", "off", "ON", "\x00", "a" * 10_000, "true,false", "[]"):
        b.legacy(f"field/legacy/labels={labels[:20]!r}", {"format": "image", "confidence": "0.01", "labels": labels})
    for fmt in ("image_and_json", "JSON", "IMAGE", "", "json\x00", "xml", "../../json"):
        b.legacy(f"field/legacy/format={fmt!r}", {"format": fmt})
    for name, value in (
        ("confidence", "abc"),
        ("confidence", "-1"),
        ("confidence", "1e308"),
        ("confidence", "inf"),
        ("confidence", "nan"),
        ("overlap", "nan"),
        ("overlap", "101"),
        ("max_detections", "0"),
        ("max_detections", "-1"),
        ("max_detections", "inf"),
        ("max_detections", "1e30"),
        ("max_detections", "x"),
        ("max_detections", "9" * 400),
        ("classes", ",,,"),
        ("classes", ",".join(["a"] * 10_000)),
        ("classes", "\x00"),
        ("name", "../../x.jpg"),
        ("confidence", "1_0"),
        ("confidence", "0x10"),
    ):
        b.legacy(f"field/legacy/{name}={value[:20]!r}", {name: value})
    b.legacy("field/legacy/10k-params", {f"p{i}": i for i in range(10_000)})
    b.http(
        "field/legacy/duplicate-confidence",
        "POST",
        f"/{b.model_id}?api_key={quote(key)}&confidence=0.5&confidence=abc",
        b.image_b64,
        TEXT,
    )


def json_list(items: list[str]) -> str:
    return orjson.dumps(items).decode()


def _url_cases(b: _Builder, lab: str | None, canary: str | None, full: bool) -> None:
    urls = list(URLS)
    if canary:  # loopback spellings of a listener that must never be reached
        port = canary.rsplit(":", 1)[1]
        hosts = [
            "127.0.0.1",
            "localhost",
            "127.1",
            "2130706433",
            "0x7f.1",
            "[::ffff:127.0.0.1]",
            "127.0.0.2.nip.io",
            "example.invalid@127.0.0.1",
        ]
        urls += [f"http://{h}:{port}/img.jpg" for h in hosts]
    if lab:
        c = canary or "http://127.0.0.1:1"
        to_canary, to_lab = quote(c + "/img.jpg", safe=""), quote(lab + "/img.jpg", safe="")
        for path in (
            f"/redirect?to={to_canary}",
            "/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd",
            "/redirect?to=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
            f"/redirect307?to={to_canary}",
            f"/redirect?to={to_lab}",
            "/redirect?to=gopher%3A%2F%2F127.0.0.1%3A6379%2F_INFO",
            "/loop",
            "/bomb.png",
            "/huge",
            "/gzip-bomb",
            "/slow",
            "/lying-length",
            "/html",
            "/status500",
            "/many-headers",
            "/img.jpg",
            "/empty",
            "/header-bomb.png",
        ):
            urls.append(lab + path)
    for i, url in enumerate(urls):
        heavy = url.endswith(("/bomb.png", "/huge", "/gzip-bomb"))
        name = url[:70]
        b.v1(f"url/v1/{name}", {"image": {"type": "url", "value": url}}, heavy=heavy)
        if full or i % 2 == 0 or (lab and url.startswith(lab)):
            b.legacy(f"url/legacy-get/{name}", {"image": url}, method="GET", heavy=heavy)
    if full:
        for url in urls:
            b.legacy(
                f"url/legacy-post-json/{url[:70]}",
                body=orjson.dumps({"image": {"type": "url", "value": url}}),
                headers=JSON,
            )
            b.legacy(f"url/legacy-post-with-image-param/{url[:70]}", {"image": url})


def _misc_cases(b: _Builder) -> None:
    bearer = {"Authorization": f"Bearer {b.key}"}
    mid = b.model_id
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND", "FOO"):
        for path in ("/healthz", f"/{mid}", "/infer/object_detection", "/model/add", f"/web/{mid}/index.html"):
            b.http(f"misc/method/{method}{path}", method, path, headers=bearer)
    b.http("misc/unknown-route", "GET", "/nope")
    b.http("misc/three-segments", "POST", target(f"/{mid}/extra", {"api_key": b.key}), b.image_b64, TEXT)
    b.http("misc/one-segment", "POST", target("/shapes", {"api_key": b.key}), b.image_b64, TEXT)
    b.http("misc/root", "GET", "/")
    b.http("misc/100kb-path", "GET", "/" + "a" * 100_000)
    b.http("misc/1mb-query", "GET", "/healthz?" + "a=" + "b" * (1 << 20))
    b.http("misc/docs-params", "GET", "/docs?url=http://evil.test/x.json&configUrl=http://evil.test/")
    b.http("misc/openapi-query", "GET", "/openapi.json?%00")
    b.http("misc/host-evil", "GET", "/healthz", headers={"Host": "evil.test"})
    b.http("misc/host-huge", "GET", "/healthz", headers={"Host": "h" * 10_000})
    b.http(
        "misc/forwarded",
        "GET",
        "/healthz",
        headers={"X-Forwarded-For": ", ".join(["1.2.3.4"] * 1000), "Forwarded": "x"},
    )
    b.http("misc/accept-encoding", "GET", "/metrics", headers={"Accept-Encoding": "gzip, br, zstd, *;q=0"})
    b.http("misc/range", "GET", f"/web/{mid}/index.html", headers={**bearer, "Range": "bytes=0-1,2-3," * 1000})
    b.http(
        "misc/range-overflow",
        "GET",
        f"/web/{mid}/model.json",
        headers={**bearer, "Range": "bytes=99999999999999999999-"},
    )
    b.http("misc/if-modified", "GET", f"/web/{mid}/index.html", headers={**bearer, "If-None-Match": "*" * 10_000})
    b.http("misc/cookie-flood", "GET", "/healthz", headers={"Cookie": "; ".join(f"c{i}=v" for i in range(2000))})
    b.http("misc/content-length-on-get", "GET", "/model/registry", b"x" * 100, headers=bearer)
    b.http("misc/model-clear-authorised", "POST", "/model/clear", b"{}", {**JSON, **bearer})
    b.http("misc/model-add-authorised", "POST", "/model/add", orjson.dumps({"model_id": mid}), {**JSON, **bearer})
    b.http(
        "misc/model-remove-unknown", "POST", "/model/remove", orjson.dumps({"model_id": "nope/9"}), {**JSON, **bearer}
    )


def _raw_cases(b: _Builder, slow_bound_s: float, drip_s: float, huge_line_mb: float) -> None:
    host = b"Host: 127.0.0.1\r\n"
    key = quote(b.key).encode()
    mid = b.model_id.encode()
    post = b"POST /" + mid + b"?api_key=" + key + b" HTTP/1.1\r\n" + host
    body = b.image_b64.encode()

    def raw(name: str, data: bytes, expect: str = "reject", **kw: Any) -> None:
        b.add(RawCase(f"raw/{name}", [(0.0, data)], expect, **kw))

    raw("http09", b"GET /healthz\r\n")
    raw("http09-crlf", b"GET /healthz\r\n\r\n")
    raw("http10-no-host", b"GET /healthz HTTP/1.0\r\n\r\n", "no5xx")
    raw("http11-no-host", b"GET /healthz HTTP/1.1\r\n\r\n")
    raw("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    raw("http3-version", b"GET /healthz HTTP/3.0\r\n" + host + b"\r\n")
    raw("version-garbage", b"GET /healthz HTTP/1.x\r\n" + host + b"\r\n")
    raw("lf-only", b"GET /healthz HTTP/1.1\n" + host.replace(b"\r\n", b"\n") + b"\n", "no5xx")
    raw("bare-cr-header", b"GET /healthz HTTP/1.1\r\n" + host + b"X: a\rb\r\n\r\n")
    raw("nul-header", b"GET /healthz HTTP/1.1\r\n" + host + b"X: a\x00b\r\n\r\n")
    raw("nul-target", b"GET /heal\x00thz HTTP/1.1\r\n" + host + b"\r\n")
    raw("space-target", b"GET /web/" + mid + b"/index .html HTTP/1.1\r\n" + host + b"\r\n")
    raw("raw-newline-in-target", b"GET /shapes/1\n HTTP/1.1\r\n" + host + b"\r\n")
    raw("non-ascii-target", b"GET /\xff\xfe/\xc0\xaf HTTP/1.1\r\n" + host + b"\r\n", "no5xx")
    raw(
        "raw-backslash-traversal",
        b"GET /web/"
        + mid
        + b"/..\\..\\..\\etc\\passwd HTTP/1.1\r\n"
        + host
        + b"Authorization: Bearer "
        + b.key.encode()
        + b"\r\n\r\n",
        "no5xx",
    )
    raw(
        "raw-dotdot-traversal",
        b"GET /web/"
        + mid
        + b"/../../../../etc/passwd HTTP/1.1\r\n"
        + host
        + b"Authorization: Bearer "
        + b.key.encode()
        + b"\r\n\r\n",
        "no5xx",
    )
    raw("absolute-form-target", b"GET http://evil.test/healthz HTTP/1.1\r\n" + host + b"\r\n", "no5xx")
    raw("connect", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n" + host + b"\r\n", "no5xx")
    raw("options-star", b"OPTIONS * HTTP/1.1\r\n" + host + b"\r\n", "no5xx")
    raw("bearer-empty", b"GET /model/registry HTTP/1.1\r\n" + host + b"Authorization: Bearer \r\n\r\n")
    raw(
        "bearer-tab",
        b"GET /model/registry HTTP/1.1\r\n" + host + b"Authorization: Bearer\t" + b.key.encode() + b"\r\n\r\n",
        "no5xx",
    )
    raw("obs-fold", b"GET /healthz HTTP/1.1\r\n" + host + b"X: a\r\n  folded\r\n\r\n")
    raw("header-no-colon", b"GET /healthz HTTP/1.1\r\n" + host + b"no colon here\r\n\r\n")
    raw("header-space-before-colon", b"GET /healthz HTTP/1.1\r\n" + host + b"X-A : b\r\n\r\n")
    raw(
        "10000-headers",
        b"GET /healthz HTTP/1.1\r\n" + host + b"".join(b"X-F-%d: v\r\n" % i for i in range(10_000)) + b"\r\n",
    )
    raw("1mb-header", b"GET /healthz HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    raw(
        "huge-request-line", b"GET /healthz?" + b"a" * int(huge_line_mb * (1 << 20)) + b" HTTP/1.1\r\n" + host + b"\r\n"
    )
    raw("huge-method", b"G" * 100_000 + b" /healthz HTTP/1.1\r\n" + host + b"\r\n")
    # body framing
    raw("content-length-negative", post + b"Content-Length: -1\r\n\r\n" + body)
    raw("content-length-garbage", post + b"Content-Length: abc\r\n\r\n" + body)
    raw("content-length-huge", post + b"Content-Length: 99999999999999999999999\r\n\r\n" + body)
    raw("content-length-twice-differ", post + b"Content-Length: 10\r\nContent-Length: 20\r\n\r\n" + b"x" * 20)
    raw(
        "content-length-and-chunked",
        post + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "no5xx",
    )
    raw("content-length-short", post + b"Content-Length: %d\r\n\r\n" % (len(body) // 2) + body, "no5xx")
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n"
    raw("chunk-size-garbage", chunked + b"zz\r\nabc\r\n0\r\n\r\n")
    raw("chunk-size-negative", chunked + b"-5\r\nabcde\r\n0\r\n\r\n")
    raw("chunk-size-overflow", chunked + b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n")
    raw("chunk-size-huge-announced", chunked + b"7fffffff\r\n" + body[:1000] + b"\r\n")
    raw("chunk-missing-crlf", chunked + b"5\r\nabcdefgh0\r\n\r\n")
    raw("chunk-ext-garbage", chunked + b"5;" + b"x" * 100_000 + b"\r\nabcde\r\n0\r\n\r\n")
    raw("chunk-trailer-flood", chunked + b"0\r\n" + b"X-T: v\r\n" * 10_000 + b"\r\n")
    raw("chunk-te-obfuscated", post + b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
    raw("chunk-te-space", post + b"Transfer-Encoding : chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
    raw("chunk-te-xchunked", post + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
    raw(
        "chunked-100k-tiny-chunks",
        chunked + b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(min(len(body), 100_000))) + b"0\r\n\r\n",
        "no5xx",
    )
    raw("chunked-valid", chunked + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n", "no5xx")
    raw("pipelined-100", (b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n") * 100, "no5xx")
    raw(
        "pipelined-smuggle",
        post + b"Content-Length: 0\r\n\r\nGET /model/registry HTTP/1.1\r\n" + host + b"\r\n",
        "no5xx",
    )
    raw("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 500)
    raw("binary-garbage", bytes(random.Random(5).randbytes(4096)))
    # clients hanging up mid-upload: nothing to answer, the server must stay clean (log, metrics, health)
    big = b"Content-Length: 1000000\r\n"
    for name, head in (
        ("legacy", post),
        ("v1", b"POST /infer/object_detection HTTP/1.1\r\n" + host),
        ("multipart", post + b"Content-Type: multipart/form-data; boundary=xx\r\n"),
    ):
        b.add(
            RawCase(
                f"raw/disconnect-mid-upload/{name}", [(0.0, head + big + b"\r\n" + body[:50_000])], "sent", rst=True
            )
        )
        b.add(RawCase(f"raw/disconnect-mid-upload-fin/{name}", [(0.0, head + big + b"\r\n" + body[:50_000])], "sent"))
    b.add(RawCase("raw/disconnect-after-headers", [(0.0, post + big + b"\r\n")], "sent", rst=True))
    b.add(RawCase("raw/disconnect-chunked", [(0.0, chunked + b"1000\r\n" + body[:100])], "sent", rst=True))
    b.add(
        RawCase(
            "raw/disconnect-during-inference",
            [(0.0, post + b"Content-Length: %d\r\n\r\n" % len(body) + body), (0.005, b"")],
            "sent",
            rst=True,
        )
    )
    # slowloris: dripped until past the bound, the server must close (or answer 4xx) within it
    steps = int(slow_bound_s / drip_s) + 5
    drip: list[tuple[float, bytes]]
    drip = [(0.0, b"GET /healthz HTTP/1.1\r\n" + host)] + [(drip_s, b"X-a: b\r\n")] * steps
    b.add(RawCase("raw/slowloris-headers", drip, deadline=slow_bound_s))
    line = b"GET /healthz?" + b"a" * 1000 + b" HTTP/1.1\r\n"
    b.add(
        RawCase(
            "raw/slowloris-request-line",
            [(drip_s if i else 0.0, line[i : i + 1]) for i in range(steps)],
            deadline=slow_bound_s,
        )
    )
    b.add(
        RawCase(
            "raw/slowloris-body-legacy",
            [(0.0, post + b"Content-Length: 100000\r\n\r\n")] + [(drip_s, b"A")] * steps,
            deadline=slow_bound_s,
        )
    )
    b.add(
        RawCase(
            "raw/slowloris-body-v1",
            [
                (
                    0.0,
                    b"POST /infer/object_detection HTTP/1.1\r\n"
                    + host
                    + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
                )
            ]
            + [(drip_s, b" ")] * steps,
            deadline=slow_bound_s,
        )
    )
    b.add(RawCase("raw/slowloris-chunked", [(0.0, chunked)] + [(drip_s, b"1\r\nA\r\n")] * steps, deadline=slow_bound_s))
    b.add(RawCase("raw/idle-after-connect", [(slow_bound_s + 5, b"")], deadline=slow_bound_s))
    b.add(
        RawCase(
            "raw/idle-keepalive",
            [(0.0, b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n")],
            "no5xx",
            deadline=slow_bound_s,
            until_close=True,
        )
    )


def _mutants(b: _Builder, rng: random.Random, count: int) -> None:
    """Random variations of valid requests: fields replaced, removed, duplicated; bytes flipped."""
    pool = list(ODD_JSON.values())
    samples = [*format_samples().values(), b.image]
    for i in range(count):
        kind = rng.random()
        if kind < 0.3:  # v1 JSON with 1-3 fields replaced or removed, maybe bytes mutated
            lits: dict[str, str] = {}
            drop: list[str] = []
            for _ in range(rng.randint(1, 3)):
                f = rng.choice([*V1_FIELDS, "x" + str(rng.randrange(9))])
                if rng.random() < 0.2:
                    drop.append(f)
                else:
                    lits[f] = rng.choice(pool) if rng.random() < 0.7 else orjson.dumps(_random_text(rng)).decode()
            full = {"model_id": b.model_id, "image": {"type": "base64", "value": b.image_b64}, "api_key": b.key}
            for k in drop:
                full.pop(k, None)
            text = json_text(full, lits)
            if rng.random() < 0.2:
                text = mutate_bytes(text, rng)
            b.http(
                f"mutant/v1/{i}",
                "POST",
                "/infer/object_detection",
                text,
                JSON,
                deny="api_key" in drop or "api_key" in lits,
            )
        elif kind < 0.55:  # legacy with random parameters
            params = {
                p: rng.choice(ODD_TEXT) if rng.random() < 0.7 else _random_text(rng)
                for p in rng.sample(LEGACY_PARAMS[:-2], rng.randint(1, 3))
            }
            body: bytes = b.image_b64.encode()
            if rng.random() < 0.3:
                body = mutate_bytes(body, rng)
            b.legacy(f"mutant/legacy/{i}", params, body=body)
        elif kind < 0.8:  # an image with flipped or cut bytes
            blob = mutate_bytes(rng.choice(samples), rng, flips=rng.randint(1, 8))
            b.image_via(f"mutant/image/{i}", blob, rng.choice(["b64", "raw", "v1", "multipart", "annotate"]))
        elif kind < 0.9:  # a path from traversal atoms
            atoms = [
                "..",
                "%2e%2e",
                "%252e%252e",
                "%2f",
                "/",
                "\\",
                "%5c",
                "%00",
                "%0a",
                "shapes",
                "1",
                ".",
                "index.html",
                "model.json",
                "etc",
                "passwd",
                "%c0%af",
                "a" * rng.randint(1, 300),
            ]
            path = "/" + "".join(rng.choice(atoms) for _ in range(rng.randint(2, 8)))
            prefix = rng.choice(["", "/web", f"/web/{b.model_id}"])
            b.http(
                f"mutant/path/{i}",
                rng.choice(["GET", "POST"]),
                prefix + path,
                b.image_b64 if rng.random() < 0.5 else None,
                {"Authorization": f"Bearer {b.key}"},
            )
        else:  # odd headers on a valid request
            headers = {
                "Content-Type": rng.choice(
                    [
                        "text/plain",
                        "application/json",
                        "image/jpeg",
                        "",
                        "x/y; a=b",
                        "multipart/form-data; boundary=" + "z" * rng.randint(0, 80),
                    ]
                ),
                rng.choice(
                    ["Accept", "Content-Encoding", "Range", "Expect", "X-Forwarded-Proto", "Origin"]
                ): _random_text(rng, ascii_only=True).strip(),
            }
            b.legacy(f"mutant/headers/{i}", headers=headers)


def _random_text(rng: random.Random, ascii_only: bool = False) -> str:
    alphabet = "abc/.%\\01-_=&?#:;,\"' \t" + ("" if ascii_only else "\x00\n\u00e9\u2603\U0001f600\ufeff")
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def mutate_bytes(data: bytes, rng: random.Random, flips: int = 4) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, flips)):
        if not out:
            break
        i, op = rng.randrange(len(out)), rng.random()
        if op < 0.5:
            out[i] = rng.randrange(256)
        elif op < 0.7:
            del out[i : i + rng.randint(1, 64)]
        elif op < 0.85:
            out[i:i] = rng.choice([b"\x00", b"\xff" * 4, b'"', b"}", b"]", b"\n", b"1e999", b"\xff\xd9"])
        else:
            del out[i:]
    return bytes(out)


def corpus(
    seed: int = 0,
    n: int = 400,
    *,
    key: str,
    model_id: str = MODEL_ID,
    image: bytes | None = None,
    lab: str | None = None,
    canary: str | None = None,
    web: bool = True,
    full: bool | None = None,
    heavy_lists: bool | None = None,
    slow_bound_s: float = RAW_DEADLINE_S,
    drip_s: float = 1.0,
    huge_line_mb: float = 4.0,
) -> list[Case]:
    """The cases, in a deterministic order for ``seed``.

    ``n``: how many. The core (every category the issue lists) has about 1,000 cases: ``n`` below that
    keeps the :data:`PINNED` ones (about 400, what the issue and the earlier probes name) and samples the
    rest by group (so ``n`` under about 480 still gives about 480); ``n`` above it adds the full cross
    products (every field with every odd value, every route with every key variant, every image by every
    transport: ``full``, on when ``n >= 1500``) and then random mutants up to ``n``.

    ``key``: the server's API key (most cases pass it, to reach the code behind it). ``image``: a valid
    JPEG (default: 64x64 noise). ``lab``: the base URL of a :class:`UrlLab` on an allowed host
    (redirects, bombs and drips behind a URL); ``canary``: its listener on a loopback address the server
    must never fetch. ``web``: include ``/web`` cases (off where the page's files are not built).
    ``heavy_lists``: v1 lists of 4 real bombs (about 3 GB of server memory today; on with ``full``).
    Slow drips send a byte every ``drip_s`` until past ``slow_bound_s``.
    """
    rng = random.Random(seed)
    full = n >= 1500 if full is None else full
    heavy_lists = full if heavy_lists is None else heavy_lists
    b = _Builder(key, model_id, image or noise_jpeg(64, 64, seed=seed))
    _raw_cases(b, slow_bound_s, drip_s, huge_line_mb)
    _auth_cases(b, full)
    _traversal_cases(b)
    _image_cases(b, full, heavy_lists)
    _body_cases(b)
    _base64_cases(b)
    _json_cases(b, full)
    _field_cases(b, full)
    _url_cases(b, lab, canary, full)
    _misc_cases(b)
    cases = [c for c in b.cases if web or "/web" not in (c.target if isinstance(c, HttpCase) else "")]
    if len(cases) > n:
        cases = _sample_by_group(cases, n, rng)
    elif len(cases) < n:
        before = len(b.cases)
        _mutants(b, rng, n - len(cases))
        cases += b.cases[before:]
    slow = [c for c in cases if isinstance(c, RawCase) and c.deadline >= slow_bound_s]
    rest = [c for c in cases if c not in slow]
    rng.shuffle(rest)
    return slow + rest  # the slow drips first: they run alongside everything else


# Always kept when the corpus is sampled down: every raw case and what the issue and the earlier probes name.
PINNED = re.compile(
    r"^(raw/|image/real-bomb/|image/header-bomb/[^/]+/b64|image/format/(dds|eps|ico|webp|tiff|gif)/"
    r"|field/v1/(api_key|confidence|max_detections|class_agnostic_nms|image)="
    r"|field/legacy/(stroke|labels|format|max_detections)=|auth/[^/]+/(missing|empty|wrong)$|auth/web-(root|index-query)"
    r"|auth/(v1|add)/json-api-key|json/v1/(truncated|deep|NaN|Infinity|huge)|traversal/(v1-model-id|web)/"
    r"|traversal/legacy-path/|url/v1/)"
)


def _sample_by_group(cases: list[Case], n: int, rng: random.Random) -> list[Case]:
    """``n`` of ``cases`` (or a few more): the :data:`PINNED` ones, then each second-level group
    (``image/format``, ``auth/v1``...) in proportion, with at least one case each."""
    keep = [c for c in cases if PINNED.match(c.name)]
    groups: dict[str, list[Case]] = {}
    for c in cases:
        if not PINNED.match(c.name):
            groups.setdefault("/".join(c.name.split("/")[:2]), []).append(c)
    budget = max(0, n - len(keep))
    total = sum(len(cs) for cs in groups.values()) or 1
    for _g, cs in sorted(groups.items()):
        k = max(1, round(len(cs) * budget / total))
        keep += cs if k >= len(cs) else [cs[i] for i in sorted(rng.sample(range(len(cs)), k))]
    return keep


# ---------------------------------------------------------------------------------------------- a URL lab


class UrlLab:
    """Two small HTTP servers for the URL cases: ``lab`` on an address the server allows (127.0.0.2),
    serving redirects, bombs, endless and dripped bodies; ``canary`` on 127.0.0.1, which the server must
    never reach (every request it gets is recorded in ``canary_hits``)."""

    def __init__(self, image: bytes, lab_host: str = "127.0.0.2", drip_total_s: float = 60.0) -> None:
        self.image, self.drip_total_s = image, drip_total_s
        self.canary_hits: list[str] = []
        self.stopped = threading.Event()
        lab = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def send(self, status: int, body: bytes, ctype: str = "image/jpeg", **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.server is lab.canary:
                    lab.canary_hits.append(self.path)
                    return self.send(200, lab.image)
                path, _, query = self.path.partition("?")
                to = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("to", "")
                from urllib.parse import unquote

                try:
                    if path == "/img.jpg":
                        self.send(200, lab.image)
                    elif path in ("/redirect", "/redirect307"):
                        self.send(302 if path == "/redirect" else 307, b"", "text/plain", Location=unquote(to))
                    elif path == "/loop":
                        self.send(302, b"", "text/plain", Location="/loop")
                    elif path == "/bomb.png":
                        self.send(200, real_bombs()["png-1bit-10000"], "image/png")
                    elif path == "/header-bomb.png":
                        self.send(200, png_header(100000, 100000), "image/png")
                    elif path == "/huge":  # 64 MB of a valid-looking JPEG start, whatever the limit
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.end_headers()
                        self.wfile.write(lab.image[:-2])
                        for _ in range(1024):
                            self.wfile.write(b"\x00" * 65536)
                    elif path == "/gzip-bomb":
                        self.send(200, _gzip_bomb(), "image/jpeg", Content_Encoding="gzip")
                    elif path == "/slow":  # a byte a second: each read is quick, the whole never ends
                        self.send_response(200)
                        self.send_header("Content-Type", "image/jpeg")
                        self.send_header("Content-Length", str(len(lab.image)))
                        self.end_headers()
                        end = time.monotonic() + lab.drip_total_s
                        for byte in lab.image:
                            if time.monotonic() > end or lab.stopped.is_set():
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(1.0)
                    elif path == "/lying-length":
                        self.send_response(200)
                        self.send_header("Content-Length", "99999999999")
                        self.end_headers()
                        self.wfile.write(lab.image)
                    elif path == "/html":
                        self.send(200, b"<html>" + b"x" * 100_000, "text/html")
                    elif path == "/status500":
                        self.send(500, b"Traceback (most recent call last): /home/lab/secret", "text/plain")
                    elif path == "/many-headers":
                        self.send(200, lab.image, **{f"X_H{i}": "v" for i in range(5000)})
                    elif path == "/empty":
                        self.send(200, b"")
                    else:
                        self.send(404, b"no", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.lab = http.server.ThreadingHTTPServer((lab_host, 0), Handler)
        self.canary = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for srv in (self.lab, self.canary):
            srv.daemon_threads = True
            srv.handle_error = lambda *a: None  # type: ignore[method-assign]  # (a peer hanging up is no news)
        self.lab_url = f"http://{lab_host}:{self.lab.server_address[1]}"
        self.canary_url = f"http://127.0.0.1:{self.canary.server_address[1]}"
        self.lab_host = lab_host

    def __enter__(self) -> UrlLab:
        for srv in (self.lab, self.canary):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for srv in (self.lab, self.canary):
            srv.shutdown()
            srv.server_close()


@cache
def _gzip_bomb() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\x00" * (1 << 20)
    return b"".join([comp.compress(block) for _ in range(256)] + [comp.flush()])  # 256 MB inflated


class NoLab:
    """Stands in for :class:`UrlLab` where 127.0.0.2 cannot be bound: no lab URL, no canary."""

    lab_url = canary_url = None
    canary_hits = ()

    def __enter__(self) -> NoLab:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def lab_available(host: str = "127.0.0.2") -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- running


@dataclass
class Outcome:
    case: Case
    status: int | str  # an HTTP status, or closed / timeout / open / sent / error:<kind>
    seconds: float
    failure: str = ""  # why the case failed ("" when it passed)
    excerpt: str = ""  # the start of the response

    @property
    def failed(self) -> bool:
        return bool(self.failure)


BINARY_TYPES = ("image/", "application/octet-stream", "application/wasm")


def leaks(headers: Iterable[tuple[str, str]], body: bytes, ctype: str, forbidden: list[str]) -> list[str]:
    """The forbidden strings found in a response: every header value, and the body unless it is binary
    (an image, the model's graph) where only ``Traceback`` is looked for."""
    found = []
    text = "\n".join(f"{k}: {v}" for k, v in headers)
    for s in forbidden:
        if s and s in text:
            found.append(f"header has {s!r}")
    look = [s for s in forbidden if s == "Traceback"] if ctype.startswith(BINARY_TYPES) else forbidden
    btext = body.decode("utf-8", "replace")
    found += [f"body has {s!r}" for s in look if s and s in btext]
    return found


def attack_client() -> httpx.Client:
    """A client for attack cases: a new connection for each (a connection the server closed after the
    previous case must not make the next one look refused), no redirects followed."""
    return httpx.Client(
        timeout=httpx.Timeout(DEADLINE_S + 5, connect=10),
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def run_http(client: httpx.Client, base: str, case: HttpCase, forbidden: list[str]) -> Outcome:
    t0 = time.perf_counter()
    req = client.build_request(
        case.method,
        base + "/",
        headers=case.headers,
        content=case.content,
        extensions={"target": case.target.encode("ascii")},
    )
    if case.content is None and case.method in ("POST", "PUT", "PATCH"):
        req.headers["Content-Length"] = "0"
    try:
        resp = client.send(req)
    except httpx.TimeoutException:
        dt = time.perf_counter() - t0
        return Outcome(case, "timeout", dt, f"no answer within {dt:.0f} s (hang)")
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        # the server closed the connection without answering: allowed (it may refuse that way)
        return Outcome(case, "closed", time.perf_counter() - t0, "", exc.__class__.__name__)
    except httpx.HTTPError as exc:
        return Outcome(
            case,
            f"error:{exc.__class__.__name__}",
            time.perf_counter() - t0,
            f"client error {exc.__class__.__name__}: {exc}"[:200],
        )
    dt = time.perf_counter() - t0
    excerpt = resp.content[:300].decode("utf-8", "replace")
    problems = []
    if resp.status_code >= 500:
        problems.append(f"HTTP {resp.status_code}")
    if dt > case.deadline:
        problems.append(f"took {dt:.1f} s > {case.deadline:g} s")
    if case.deny and resp.status_code < 400:
        problems.append(f"accepted without a valid key (HTTP {resp.status_code})")
    problems += leaks(resp.headers.multi_items(), resp.content, resp.headers.get("content-type", ""), forbidden)
    return Outcome(case, resp.status_code, dt, "; ".join(problems), excerpt)


def run_raw(host: str, port: int, case: RawCase) -> Outcome:
    t0 = time.perf_counter()
    end = t0 + case.deadline
    got = b""
    closed = False

    def remaining() -> float:
        return max(0.0, end - time.perf_counter())

    def poll(timeout: float) -> None:  # read whatever the server says within ``timeout``
        nonlocal got, closed
        stop = time.perf_counter() + timeout
        while not closed and (left := stop - time.perf_counter()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                return
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, OSError):
                closed = True
                return
            if not data:
                closed = True
                return
            got += data
            if _status(got) is not None and not case.until_close:
                return

    sock = socket.create_connection((host, port), timeout=10)
    try:
        for delay, data in case.steps:
            if delay:
                poll(min(delay, remaining()))
                if closed or (_status(got) is not None and not case.until_close) or remaining() == 0:
                    break
            if data:
                sock.settimeout(max(0.1, remaining()))
                try:
                    sock.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                except TimeoutError:
                    break  # the server neither reads nor closes
        if case.expect == "sent":
            if case.rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return Outcome(case, "sent", time.perf_counter() - t0)
        if not closed:
            poll(remaining())
        try:  # after a reset, an answer may still be in the buffer
            sock.setblocking(False)
            got += sock.recv(65536)
        except (BlockingIOError, OSError):
            pass
    finally:
        sock.close()
    dt = time.perf_counter() - t0
    status = _status(got)
    excerpt = got[:200].decode("latin-1")
    if status is None and got:
        return Outcome(case, "non-http", dt, f"answered without a status line: {got[:60]!r}", excerpt)
    if status is None:
        why = "" if closed else f"connection neither answered nor closed within {case.deadline:g} s"
        return Outcome(case, "closed" if closed else "open", dt, why, excerpt)
    problems = []
    if status >= 500:
        problems.append(f"HTTP {status}")
    elif case.expect == "reject" and status < 400:
        problems.append(f"accepted (HTTP {status}), expected a 4xx or a closed connection")
    if case.until_close and not closed:
        problems.append(f"connection still open after {case.deadline:g} s")
    return Outcome(case, status, dt, "; ".join(problems), excerpt)


def _status(data: bytes) -> int | None:
    m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", data)
    return int(m.group(1)) if m else None


WEDGED = "server unresponsive"  # a checkpoint failure with this in it stops the run


def run_corpus(
    cases: list[Case],
    base: str,
    forbidden: list[str],
    *,
    workers: int = 4,
    checkpoint: Callable[[int], list[str]] | None = None,
    every: int = 20,
    progress: Callable[[Outcome], None] | None = None,
    wedge_after: int = 8,
) -> tuple[list[Outcome], list[str]]:
    """Send ``cases`` to the server at ``base``, ``workers`` HTTP cases at a time (``heavy`` ones alone,
    raw ones on their own threads); every ``every`` cases ``checkpoint(k)`` runs while attacks are in
    flight and returns its failures. Returns the outcomes (of the cases run, in order) and the failures
    of the checkpoints.

    A wedged server would make every remaining case wait out its deadline: after ``wedge_after`` HTTP
    cases in a row without an answer, or a checkpoint failure that says :data:`WEDGED`, no more cases
    are sent, and a failure names the cases that were in flight when the first of those timeouts began."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    local = threading.local()
    heavy_lock = _SharedLock()
    slots = threading.Semaphore(workers)
    clients: list[httpx.Client] = []
    state = threading.Lock()
    in_flight: dict[str, float] = {}  # case name -> start
    timeouts: list[Outcome] = []  # the current run of HTTP cases without an answer
    wedged = threading.Event()
    suspects: list[str] = []

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = attack_client()
            clients.append(local.c)
        return local.c

    def one(case: Case) -> Outcome:
        started = time.perf_counter()
        with state:
            in_flight[case.name] = started
        try:
            if isinstance(case, RawCase):
                out = run_raw(host, int(port), case)
            else:
                with heavy_lock.exclusive() if case.heavy else heavy_lock.shared():
                    out = run_http(client(), base, case, forbidden)
        except Exception as exc:  # a bug in the runner must not hide the rest
            out = Outcome(case, f"error:{exc.__class__.__name__}", 0.0, f"runner error: {exc!r}"[:200])
        with state:
            in_flight.pop(case.name, None)
            if isinstance(case, HttpCase):
                if out.status == "timeout":
                    if not timeouts:  # what was running when the first of them was sent
                        suspects[:] = [n for n, t in in_flight.items() if t <= started + 1] + [case.name]
                    timeouts.append(out)
                    if len(timeouts) >= wedge_after:
                        wedged.set()
                else:
                    timeouts.clear()
        if progress:
            progress(out)
        return out

    futures: list[Future[Outcome]] = []
    failures: list[str] = []
    raw_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="raw")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fuzz")
    sent = 0
    try:
        for i, case in enumerate(cases):
            if wedged.is_set():
                break
            sent += 1
            if isinstance(case, RawCase):
                futures.append(raw_pool.submit(one, case))
                continue
            slots.acquire()
            fut = pool.submit(one, case)
            fut.add_done_callback(lambda _: slots.release())
            futures.append(fut)
            if checkpoint and i % every == every - 1:
                bad = checkpoint(i + 1)
                failures += bad
                if any(WEDGED in b for b in bad):
                    with state:
                        suspects[:] = suspects or list(in_flight)
                    wedged.set()
        outcomes = [f.result() for f in futures]
        if checkpoint and not wedged.is_set():
            failures += checkpoint(len(cases))
    finally:
        pool.shutdown(wait=True)
        raw_pool.shutdown(wait=True)
        for c in clients:
            c.close()
    if wedged.is_set():
        failures.append(
            f"{WEDGED}: stopped after {sent} of {len(cases)} cases (valid requests or {wedge_after} "
            f"cases in a row got no answer); in flight when it began: {suspects}"
        )
    return outcomes, failures


class _SharedLock:
    """Many holders of ``shared``, or one of ``exclusive`` (a heavy case runs with no other attack case
    in flight, so what it does to the server is its own)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.readers = 0
        self.writer = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: not self.writer)
            self.readers += 1
        try:
            yield
        finally:
            with self.cond:
                self.readers -= 1
                self.cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: not self.writer)
            self.writer = True
            self.cond.wait_for(lambda: self.readers == 0)
        try:
            yield
        finally:
            with self.cond:
                self.writer = False
                self.cond.notify_all()


def forbidden_strings(key: str, *paths: str) -> list[str]:
    """What no response may carry: the key, server paths, and what a leaked traceback or file shows."""
    import sys
    import tempfile
    from pathlib import Path

    out = [
        key,
        "Traceback",
        "site-packages",
        "/home/",
        "/tmp/",
        "root:x:0:0",
        tempfile.gettempdir() + "/",
        str(Path(__file__).resolve().parents[1]),
        sys.prefix,
    ]
    for p in paths:
        out += [str(p), str(Path(p).resolve())]
    return sorted({s for s in out if s and s != "/"}, key=len, reverse=True)


def metrics_5xx(text: str) -> dict[str, float]:
    """``{'route status': count}`` of the 5xx answers the server counted (also those no client saw)."""
    out = {}
    for m in re.finditer(r"^speedmap_requests_total\{(.*)\}\s+(\S+)$", text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("status", "").startswith("5") and float(m.group(2)) > 0:
            out[f"{labels.get('route', '?')} {labels['status']}"] = float(m.group(2))
    return out


def counted_5xx(base: str) -> dict[str, float]:
    """:func:`metrics_5xx` of the server at ``base``, or why ``/metrics`` could not be read."""
    try:
        return metrics_5xx(httpx.get(f"{base}/metrics", timeout=10).text)
    except httpx.HTTPError as exc:
        return {f"/metrics did not answer ({exc.__class__.__name__})": float("nan")}


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """Statuses, 5xx, hangs and failures by group, for reports."""
    statuses = Counter(str(o.status) for o in outcomes)
    return {
        "cases": len(outcomes),
        "statuses": dict(sorted(statuses.items())),
        "5xx": sum(1 for o in outcomes if isinstance(o.status, int) and o.status >= 500),
        "hangs": sum(
            1
            for o in outcomes
            if o.status in ("timeout", "open") or "took" in o.failure or "neither answered" in o.failure
        ),
        "failures": sum(1 for o in outcomes if o.failed),
        "failed_groups": dict(Counter("/".join(o.case.name.split("/")[:2]) for o in outcomes if o.failed)),
    }


def failure_report(outcomes: list[Outcome], limit: int = 400) -> str:
    lines = []
    for o in outcomes:
        if o.failed:
            lines.append(f"{o.case.name}: {o.failure} -- {o.case.describe()[:200]} -> {o.excerpt[:160]!r}")
    return "\n".join(lines[:limit]) + (f"\n... and {len(lines) - limit} more" if len(lines) > limit else "")
