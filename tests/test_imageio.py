from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from speedmap.imageio import ImageReadError, image_size, read_image
from tests.conftest import write_image


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_header_size_honours_exif_like_the_decoder(tmp_path: Path, orientation: int, fmt: str) -> None:
    path = write_image(tmp_path / f"o{orientation}.{fmt.lower()}", 40, 30, fmt, orientation)
    w, h = image_size(path)
    arr = read_image(path)
    assert arr.shape == (h, w, 3)
    assert (w, h) == ((30, 40) if orientation >= 5 else (40, 30))


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "I", "CMYK", "1"])
def test_any_mode_decodes_to_uint8_rgb(tmp_path: Path, mode: str) -> None:
    base = Image.fromarray(np.arange(20 * 10, dtype=np.uint8).reshape(10, 20) + 20)
    im = (
        base.convert(mode)
        if mode not in ("I;16",)
        else Image.fromarray(np.arange(200, dtype=np.uint16).reshape(10, 20) * 300)
    )
    fmt = "TIFF" if mode in ("CMYK", "I") else "PNG"
    path = tmp_path / f"m.{fmt.lower()}"
    im.save(path, format=fmt)
    arr = read_image(path)
    assert arr.shape == (10, 20, 3) and arr.dtype == np.uint8
    if mode == "I;16":  # 16-bit scales to the full 8-bit range, not clipped to white
        assert 0 <= arr.min() < 10 and arr.max() > 200


def test_bytes_input_and_errors(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpg", 16, 8)
    assert read_image(path.read_bytes()).shape == (8, 16, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        image_size(bad)
    big = write_image(tmp_path / "big.jpg", 200, 150)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(big.read_bytes()[: len(big.read_bytes()) // 2])
    assert image_size(truncated) == (200, 150)  # the header is intact
    with pytest.raises(ImageReadError, match="corrupt"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="not found"):
        image_size(tmp_path / "missing.jpg")


def _png_with_exif_after_idat(path: Path, orientation: int) -> None:
    import struct
    import zlib

    Image.new("RGB", (30, 20), (1, 2, 3)).save(path)
    data = path.read_bytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + chunk + data[iend:])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_header_parser_agrees_with_pillow(tmp_path: Path, orientation: int) -> None:
    from speedmap.imageio import fast_header

    cases = []
    for fmt, kw in (("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {})):
        for mode in ("RGB", "L"):
            p = tmp_path / f"{fmt}{len(cases)}.{fmt.lower()}"
            exif = Image.Exif()
            exif[0x0112] = orientation
            Image.new(mode, (37, 23)).save(p, format=fmt, exif=exif.tobytes(), **kw)
            cases.append(p)
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (37, 23)).save(p, exif=Image.Exif().tobytes())
    cases.append(p)
    p = tmp_path / "late.png"
    _png_with_exif_after_idat(p, orientation)
    cases.append(p)
    for p in cases:
        fast = fast_header(p)
        assert fast is not None, p  # the fast path is taken for plain JPEG/PNG
        with Image.open(p) as im:
            expected = (ImageOps.exif_transpose(im) or im).size
        assert image_size(p) == expected == read_image(p).shape[1::-1], p


def test_xmp_orientation_defers_to_pillow(tmp_path: Path) -> None:
    from speedmap.imageio import fast_header

    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    p = tmp_path / "xmp.jpg"
    Image.new("RGB", (40, 20)).save(p, xmp=xmp)
    assert fast_header(p) is None
    assert image_size(p) == read_image(p).shape[1::-1]


DECODERS = ["pil", "cv2", "simplejpeg"]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_decoders_equal_pillow_with_orientation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          decoder: str, orientation: int) -> None:  # fmt: skip
    from speedmap.imageio import jpeg_decoder_name

    if decoder != "pil":
        pytest.importorskip(decoder)
    monkeypatch.setenv("SPEEDMAP_JPEG_DECODER", decoder)
    assert jpeg_decoder_name() == decoder
    path = write_image(tmp_path / f"o{orientation}.jpg", 40, 30, "JPEG", orientation)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == expected.shape and got.flags.c_contiguous
    assert np.abs(got.astype(int) - expected).max() <= 1  # libjpeg-turbo everywhere: identical in practice
    assert (read_image(path.read_bytes()) == got).all()


@pytest.mark.parametrize("decoder", DECODERS)
def test_truncated_jpeg_is_an_error_with_every_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       decoder: str) -> None:  # fmt: skip
    if decoder != "pil":
        pytest.importorskip(decoder)
    monkeypatch.setenv("SPEEDMAP_JPEG_DECODER", decoder)
    data = write_image(tmp_path / "a.jpg", 64, 48).read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "t.jpg")
    with pytest.raises(ImageReadError):
        read_image(data[: len(data) // 2])
    grey = tmp_path / "g.jpg"
    Image.new("L", (9, 7), 77).save(grey)
    assert read_image(grey).shape == (7, 9, 3) and abs(int(read_image(grey)[0, 0, 0]) - 77) <= 1
