"""Image size and EXIF orientation from JPEG and PNG headers, read with a few raw file reads and no
decoder: the dataset layer probes thousands of files with it; anything unusual (``None``) is left to Pillow."""

from __future__ import annotations

import os
from pathlib import Path

ORIENTATION_TAG = 0x0112  # EXIF orientation, in IFD0
SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations 5-8 rotate by 90 or 270 degrees: width and height swap

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_XMP_JPEG = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_EXIF_CHUNK = 1 << 20  # a larger eXIf chunk is left to Pillow rather than read whole here


def fast_header(path: str | Path) -> tuple[int, int, int] | None:
    """``(width, height, orientation)`` of a JPEG or PNG file, or ``None`` to defer to Pillow."""
    fd = os.open(path, os.O_RDONLY)  # raw fd: half the cost of open() on many small files
    try:
        head = os.read(fd, 8192)
        if head[:3] == b"\xff\xd8\xff":
            return jpeg_header(HeaderBuffer(fd, head))
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
        if int.from_bytes(tiff[e : e + 2], order) == ORIENTATION_TAG:
            kind, n = int.from_bytes(tiff[e + 2 : e + 4], order), int.from_bytes(tiff[e + 4 : e + 8], order)
            if n != 1 or kind not in (3, 4):
                return None
            value = int.from_bytes(tiff[e + 8 : e + (10 if kind == 3 else 12)], order)
            return value if 1 <= value <= 8 else 1
    return 1


class HeaderBuffer:
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


def jpeg_header(buf: HeaderBuffer, info: dict[str, int] | None = None) -> tuple[int, int, int] | None:
    """Walk the JPEG marker segments up to the start of scan; ``None`` to defer to Pillow (truncated, malformed,
    odd EXIF, or an XMP block that may hold the orientation)."""
    size: tuple[int, int] | None = None
    orient: int | None = None
    xmp = False
    pos = 2
    while True:
        segment = _jpeg_segment(buf, pos)
        if segment is None:
            return None
        m, seg, pos = segment
        if m == 0xDA or m == 0xD9:  # start of scan / end of image: headers done
            break
        if m in _SOF:
            size = _jpeg_frame_size(seg, info)
            if size is None:
                return None
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


def _jpeg_segment(buf: HeaderBuffer, pos: int) -> tuple[int, bytes, int] | None:
    """The marker at ``pos`` (fill bytes skipped), its payload (empty for markers without one) and the position
    after it; ``None`` if there is no marker there, its length is invalid or the file ends first."""
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
    if m == 0xDA or m == 0xD9 or 0xD0 <= m <= 0xD7 or m == 0x01:  # no length: scan, end, restart, TEM
        return m, b"", pos
    if not buf.need(pos + 2):
        return None
    length = int.from_bytes(buf.data[pos : pos + 2], "big")
    if length < 2 or not buf.need(pos + length):
        return None
    return m, buf.data[pos + 2 : pos + length], pos + length


def _jpeg_frame_size(seg: bytes, info: dict[str, int] | None) -> tuple[int, int] | None:
    """``(width, height)`` from a start-of-frame payload (and its component count into ``info``); ``None`` if
    too short."""
    if len(seg) < 5:
        return None
    if info is not None and len(seg) > 5:
        info["components"] = seg[5]
    return int.from_bytes(seg[3:5], "big"), int.from_bytes(seg[1:3], "big")


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
            if length > _MAX_EXIF_CHUNK:
                return None
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
