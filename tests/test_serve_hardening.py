"""The server under hostile clients, started for real: slow and oversized heads, slow bodies, the request
deadline, SIGTERM with requests in flight, model unloads under load, bytes in flight, memory per request,
and the key kept out of ``ps``."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.test_serve import KEY, b64, start_server


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.settimeout(20)
    return s


def _answer(s: socket.socket) -> bytes:
    try:
        return s.recv(200)
    except (ConnectionResetError, TimeoutError):
        return b""


def _one_bit_png(w: int, h: int) -> bytes:
    """A real 1-bit PNG, all black: a few KB that decode to w*h*3 bytes of RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * ((w + 7) // 8)
    idat = zlib.compress(row * h, 9)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def strict(model_store: Path):  # type: ignore[no-untyped-def]
    """A server with short limits, so that the tests see them act."""
    proc, url = start_server(
        model_store,
        "--api-key",
        KEY,
        "--header-timeout",
        "1",
        "--body-timeout",
        "1.5",
        "--request-timeout",
        "3",
        "--max-body-mb",
        "4",
    )
    yield proc, url
    proc.terminate()
    proc.wait(15)


def test_slow_and_oversized_heads_are_cut(strict) -> None:  # type: ignore[no-untyped-def]
    _, url = strict
    s, t = _raw(url), time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nX-a: 1\r\n")  # headers never finished
    assert _answer(s).startswith(b"HTTP/1.1 408") and time.monotonic() - t < 3
    s = _raw(url)
    with pytest.raises(OSError):  # the server answers 431 and closes while we still send
        s.sendall(b"GET /" + b"a" * 8_000_000 + b" HTTP/1.1\r\n\r\n")
        s.sendall(b"x" * 1_000_000)
    s = _raw(url)
    s.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-big: " + b"b" * 200_000 + b"\r\n\r\n")
    assert _answer(s).startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{url}/healthz").status_code == 200


def test_slow_body_and_the_deadline(strict, images: list[Path]) -> None:  # type: ignore[no-untyped-def]
    _, url = strict
    s, t = _raw(url), time.monotonic()
    head = f"POST /shapes/1?api_key={KEY} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    s.sendall(head + b"AAAA")  # then nothing: the body never comes
    answer = _answer(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - t < 2.5
    # a body that drips one byte every 0.2 s: cut by the body timeout, never held open
    s, t = _raw(url), time.monotonic()
    s.sendall(head)
    got = b""
    for _ in range(40):
        try:
            s.sendall(b"A")
        except OSError:
            break
        s.settimeout(0.2)
        try:
            got = s.recv(200)
            break
        except TimeoutError:
            continue
    assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - t < 4, got
    ok = httpx.post(f"{url}/shapes/1", params={"api_key": KEY}, content=b64(images[0]))
    assert ok.status_code == 200


def test_pixels_images_and_bytes_in_flight_are_bounded(model_store: Path) -> None:
    proc, url = start_server(model_store, "--max-inflight-mb", "200", "--max-images", "4")
    try:
        bomb = base64.b64encode(_one_bit_png(10000, 10000)).decode()  # 12 KB -> 300 MB of RGB
        before = _rss_mb(proc.pid)
        r = httpx.post(f"{url}/shapes/1", content=bomb, timeout=60)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text  # 600 MB to decode > 200 MB
        assert _rss_mb(proc.pid) - before < 100
        four = {"model_id": "shapes/1", "image": [{"type": "base64", "value": bomb}] * 4}
        r = httpx.post(f"{url}/infer/object_detection", json=four, timeout=60)
        assert r.status_code in (413, 503), r.text
        many = {"model_id": "shapes/1", "image": ["AAAA"] * 200_000}
        t = time.monotonic()
        r = httpx.post(f"{url}/infer/object_detection", json=many, timeout=60)
        assert r.status_code == 413 and "at most 4" in r.json()["message"] and time.monotonic() - t < 5
        assert _rss_mb(proc.pid) - before < 100
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_decoded_images_are_not_kept(model_store: Path) -> None:
    """A 25 MP image: the answer comes, and the server does not keep its 75 MB of pixels."""
    proc, url = start_server(model_store)
    try:
        arr = np.random.default_rng(0).integers(0, 255, (5000, 5000, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=50)
        body = base64.b64encode(buf.getvalue())
        httpx.post(f"{url}/shapes/1", content=b64_small(), timeout=60)  # model loaded
        before = _rss_mb(proc.pid)
        with ThreadPoolExecutor(4) as pool:
            codes = list(
                pool.map(lambda _: httpx.post(f"{url}/shapes/1", content=body, timeout=60).status_code, range(8))
            )
        assert codes == [200] * 8
        assert _rss_mb(proc.pid) - before < 150, (before, _rss_mb(proc.pid))
    finally:
        proc.terminate()
        proc.wait(15)


def b64_small() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 20, 200)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue())


def test_unloading_models_never_fails_queued_requests(model_store: Path, images: list[Path]) -> None:
    proc, url = start_server(model_store, "--max-batch", "1")
    try:
        raw = b64(images[0])
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(client.post, f"{url}/shapes/1", content=raw) for _ in range(48)]
            for i in range(6):
                time.sleep(0.05)
                route = "/model/clear" if i % 2 else "/model/remove"
                assert client.post(f"{url}{route}", json={"model_id": "shapes/1"}).status_code == 200
            codes = [f.result().status_code for f in futures]
        assert codes == [200] * 48, codes
    finally:
        proc.terminate()
        proc.wait(15)


def test_sigterm_stops_within_10_s_with_requests_in_flight(model_store: Path, images: list[Path]) -> None:
    proc, url = start_server(model_store, "--body-timeout", "120", "--request-timeout", "120")
    slow = _raw(url)
    slow.sendall(b"POST /shapes/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nAAAA")  # in flight
    with ThreadPoolExecutor(8) as pool:
        busy = [pool.submit(httpx.post, f"{url}/shapes/1", content=b64(images[0]), timeout=30) for _ in range(16)]
        time.sleep(0.3)
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        stopped = time.monotonic() - t
        outcomes = []
        for f in busy:
            try:
                outcomes.append(f.result().status_code)
            except httpx.HTTPError:
                outcomes.append("closed")
    assert stopped < 10.5, stopped
    assert all(o == 200 or o == 503 or o == "closed" for o in outcomes), outcomes
    last = _answer(slow)
    assert last == b"" or last.startswith(b"HTTP/1.1"), last  # closed, or answered


def test_api_key_is_not_in_ps(model_store: Path, tmp_path: Path) -> None:
    proc, url = start_server(model_store, "--api-key", KEY)
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert KEY.encode() not in cmdline and b"serve" in cmdline
        assert httpx.get(f"{url}/model/registry", params={"api_key": KEY}).status_code == 200
        assert httpx.get(f"{url}/model/registry", params={"api_key": "nope"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(15)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    proc, url = start_server(model_store, "--api-key-file", str(key_file))
    try:
        assert httpx.get(f"{url}/model/registry", params={"api_key": KEY}).status_code == 200
        assert KEY.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        proc.terminate()
        proc.wait(15)
    assert os.environ.get("SPEEDMAP_API_KEY") is None
