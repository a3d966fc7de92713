"""The server, started for real on 127.0.0.1, driven by the real Roboflow clients (inference-sdk,
inference-cli's benchmark, a requests POST as curl sends it) and by malformed requests."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from speedmap.engine import Model
from speedmap.serve.process import free_port

KEY = "test-key-123"


def start_server(store: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedmap", "serve", "--models", str(store), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stdout.read() if proc.stdout else ''}")


@pytest.fixture(scope="module")
def server(model_store: Path) -> Iterator[str]:
    proc, url = start_server(model_store, "--api-key", KEY, "--max-body-mb", "1")
    yield url
    proc.terminate()
    proc.wait(10)


def boxes(preds: list[dict]) -> list[tuple]:
    return sorted(
        (
            p["class"],
            round(p["x"], 1),
            round(p["y"], 1),
            round(p["width"], 1),
            round(p["height"], 1),
            round(p["confidence"], 3),
        )
        for p in preds
    )


def expected(engine: Model, path: Path, conf: float, iou: float = 0.3) -> list[tuple]:
    return boxes(engine.predict(path, conf=conf, iou=iou, max_det=300).to_roboflow()["predictions"])


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_inference_sdk_v1_and_v0_unchanged(server: str, images: list[Path], engine: Model, client_python: Path) -> None:
    script = f"""
import json, sys, warnings
warnings.simplefilter("ignore")
from inference_sdk import InferenceHTTPClient, InferenceConfiguration
client = InferenceHTTPClient(api_url="{server}", api_key="{KEY}")
client.configure(InferenceConfiguration(confidence_threshold=0.05, iou_threshold=0.45))
out = {{"v1": client.infer({str(images[0])!r}, model_id="shapes/1"),
        "v1_list": client.infer([{str(images[0])!r}, {str(images[1])!r}], model_id="shapes/1"),
        "registry": client.list_loaded_models().to_dict() if hasattr(client.list_loaded_models(), "to_dict") else None}}
client.select_api_v0()
out["v0"] = client.infer({str(images[0])!r}, model_id="shapes/1")
print(json.dumps(out, default=str))
"""
    proc = subprocess.run([str(client_python), "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    want = expected(engine, images[0], 0.05, 0.45)
    assert len(want) > 0
    assert boxes(out["v1"]["predictions"]) == want
    assert boxes(out["v0"]["predictions"]) == want
    assert [boxes(r["predictions"]) for r in out["v1_list"]] == [want, expected(engine, images[1], 0.05, 0.45)]
    assert out["v1"]["image"] == {"width": 64, "height": 64}


def test_requests_post_as_curl_sends_it(server: str, images: list[Path], engine: Model) -> None:
    requests = pytest.importorskip("requests")
    r = requests.post(
        f"{server}/shapes/1",
        params={"api_key": KEY, "confidence": 5, "name": "x.jpg"},
        data=b64(images[0]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"inference_id", "time", "image", "predictions"} and doc["time"] > 0
    assert float(r.headers["X-Processing-Time"]) > 0
    assert boxes(doc["predictions"]) == expected(engine, images[0], 0.05)
    p = doc["predictions"][0]
    assert set(p) == {"x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"}


def test_body_variants_and_defaults(server: str, images: list[Path], engine: Model) -> None:
    url, raw = f"{server}/shapes/1", b64(images[0])
    q = {"api_key": KEY, "confidence": "0.05"}
    ref = boxes(httpx.post(url, params=q, content=raw).json()["predictions"])
    wrapped = "data:image/jpeg;base64," + "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))
    for body, ctype in ((wrapped, "text/plain"), (raw, "application/json"), (json.dumps(raw), "application/json")):
        r = httpx.post(url, params=q, content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, (ctype, r.text)
        assert boxes(r.json()["predictions"]) == ref
    r = httpx.post(url, params=q, files={"file": ("a.jpg", images[0].read_bytes(), "image/jpeg")})
    assert r.status_code == 200 and boxes(r.json()["predictions"]) == ref
    # defaults as Roboflow's: confidence 0.4, overlap 0.3, on both route families, and they agree
    legacy = httpx.post(url, params={"api_key": KEY}, content=raw).json()
    v1 = httpx.post(
        f"{server}/infer/object_detection",
        json={"model_id": "shapes/1", "api_key": KEY, "image": {"type": "base64", "value": raw}},
    ).json()
    assert boxes(legacy["predictions"]) == boxes(v1["predictions"]) == expected(engine, images[0], 0.4, 0.3)
    # percent scale, class filter, max_detections, unknown parameters ignored
    pct = httpx.post(url, params={"api_key": KEY, "confidence": 5, "overlap": 30, "foo": "bar"}, content=raw)
    assert boxes(pct.json()["predictions"]) == boxes(
        httpx.post(url, params={**q, "overlap": "0.3"}, content=raw).json()["predictions"]
    )
    first = ref[0][0]
    only = httpx.post(url, params={**q, "classes": f"{first},nonexistent"}, content=raw).json()["predictions"]
    assert only and {p["class"] for p in only} == {first}
    assert len(httpx.post(url, params={**q, "max_detections": 1}, content=raw).json()["predictions"]) == 1
    img = httpx.post(url, params={**q, "format": "image", "stroke": 2}, content=raw)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"


def test_model_management_routes(server: str) -> None:
    h = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{server}/model/clear", json={}, headers=h).json() == {"models": []}
    reg = httpx.post(f"{server}/model/add", json={"model_id": "shapes/1", "api_key": KEY}).json()
    assert reg["models"] == [
        {
            "model_id": "shapes/1",
            "task_type": "object-detection",
            "batch_size": 8,
            "input_height": 64,
            "input_width": 64,
        }
    ]
    assert httpx.get(f"{server}/model/registry", headers=h).json() == reg
    assert httpx.post(f"{server}/model/remove", json={"model_id": "shapes/1"}, headers=h).json() == {"models": []}
    info = httpx.get(f"{server}/info").json()
    assert info["name"] == "speedmap" and info["version"] and info["uuid"]


def test_api_key_is_required_except_health_and_info(server: str, images: list[Path]) -> None:
    raw = b64(images[0])
    assert httpx.post(f"{server}/shapes/1", content=raw).status_code == 401
    assert httpx.post(f"{server}/shapes/1", params={"api_key": "wrong"}, content=raw).status_code == 401
    r = httpx.post(f"{server}/infer/object_detection", json={"model_id": "shapes/1", "image": raw})
    assert r.status_code == 401 and "API key" in r.json()["message"]
    assert httpx.get(f"{server}/model/registry").status_code == 401
    assert httpx.get(f"{server}/healthz").status_code == 200 and httpx.get(f"{server}/info").status_code == 200


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_bad_requests_get_clear_errors_and_the_server_lives(server: str, images: list[Path]) -> None:
    q = {"api_key": KEY}
    good = images[0].read_bytes()
    url_image = {"type": "url", "value": "http://169.254.169.254/latest"}
    multipart = {"content": b"--xx\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=xx"}}
    cases = [
        ("/shapes/1", {}, {"content": base64.b64encode(good[: len(good) // 3])}, 400, "bad image"),
        ("/shapes/1", {}, {"content": b"%%% not base64 %%%"}, 400, "base64"),
        ("/shapes/1", {}, {"content": b""}, 400, "empty"),
        ("/shapes/1", {}, {"content": base64.b64encode(_png_header(20000, 20000))}, 400, "pixel limit"),
        ("/shapes/1", {}, {"content": b"A" * (2 * 1024 * 1024)}, 413, "limit"),
        ("/shapes/404", {}, {"content": b64(images[0])}, 404, "not found"),
        ("/..%2F..%2Fetc/passwd", {}, {"content": b64(images[0])}, 404, ""),
        ("/shapes/1", {"format": "pdf"}, {"content": b64(images[0])}, 400, "format"),
        ("/shapes/1", {"confidence": "abc"}, {"content": b64(images[0])}, 400, "confidence"),
        ("/infer/object_detection", {}, {"content": b'{"model_id": "shapes/1", "image": '}, 400, "malformed JSON"),
        ("/infer/object_detection", {}, {"json": {"image": "x"}}, 422, "model_id"),
        ("/infer/object_detection", {}, {"json": {"model_id": "shapes/1", "image": url_image}}, 400, "disabled"),
        ("/shapes/1", {}, multipart, 400, ""),
    ]
    for path, params, kw, status, words in cases:
        r = httpx.post(f"{server}{path}", params={**q, **params}, timeout=30, **kw)
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        assert "message" in r.json() and words in r.json()["message"], (path, r.text[:200])
    assert httpx.get(f"{server}/healthz").status_code == 200
    ok = httpx.post(f"{server}/shapes/1", params=q, content=b64(images[0]))
    assert ok.status_code == 200


def test_concurrent_requests_batch_and_match(server: str, images: list[Path], engine: Model) -> None:
    raw = [b64(p) for p in images]
    want = [expected(engine, p, 0.05) for p in images]
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(16) as pool:

        def one(i: int) -> tuple[int, list[tuple]]:
            r = client.post(f"{server}/shapes/1", params={"api_key": KEY, "confidence": 0.05}, content=raw[i % 4])
            assert r.status_code == 200, r.text
            return i % 4, boxes(r.json()["predictions"])

        for k, got in pool.map(one, range(64)):
            assert got == want[k]  # batched with others, still its own answer
    metrics = httpx.get(f"{server}/metrics").text
    assert 'speedmap_requests_total{route="/{project}/{version}",status="200"}' in metrics
    assert "speedmap_batch_size_bucket" in metrics and "speedmap_queue_depth" in metrics


def test_full_queue_answers_503_with_retry_after(model_store: Path, images: list[Path]) -> None:
    proc, url = start_server(model_store, "--queue-size", "1", "--max-batch", "1")
    try:
        raw = b64(images[0])
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(32) as pool:
            rs = list(pool.map(lambda _: client.post(f"{url}/shapes/1", content=raw), range(96)))
        codes = [r.status_code for r in rs]
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["message"]
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("legacy", [False, True])
def test_inference_cli_benchmark_has_zero_errors(
    server: str, images: list[Path], client_python: Path, tmp_path: Path, legacy: bool
) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    cli = client_python.parent / "inference"
    out = tmp_path / "result.json"
    cmd = [
        str(cli),
        "benchmark",
        "api-speed",
        "-m",
        "shapes/1",
        "-d",
        str(folder),
        "-h",
        server,
        "-wr",
        "2",
        "-br",
        "40",
        "-c",
        "4",
        "-a",
        KEY,
        "-o",
        str(out),
        "-y",
        "--max_error_rate",
        "0",
    ]
    if legacy:
        cmd.append("--legacy-endpoints")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "ROBOFLOW_API_KEY": KEY})
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    result = json.loads(out.read_text())
    stats = result["benchmark_results"]
    assert stats["error_rate"] == 0 and stats["inferences_made"] >= 40, stats


def test_no_numpy_leaks_into_json(server: str, images: list[Path]) -> None:
    r = httpx.post(f"{server}/shapes/1", params={"api_key": KEY, "confidence": 0.05}, content=b64(images[0]))
    for p in r.json()["predictions"]:
        assert isinstance(p["class_id"], int) and isinstance(p["x"], float)
    assert np.isfinite([p["confidence"] for p in r.json()["predictions"]]).all()


def test_workers_and_allowlisted_image_urls(model_store: Path, images: list[Path], engine: Model) -> None:
    import http.server
    import threading

    folder = images[0].parent
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    image_url = f"http://127.0.0.1:{files.server_address[1]}/{images[0].name}"
    proc, url = start_server(model_store, "--workers", "2", "--allow-url-host", "127.0.0.1", "--allow-private-urls")
    try:
        want = expected(engine, images[0], 0.05)
        r = httpx.get(f"{url}/shapes/1", params={"image": image_url, "confidence": 0.05}, timeout=60)
        assert r.status_code == 200, r.text
        assert boxes(r.json()["predictions"]) == want
        v1 = httpx.post(
            f"{url}/infer/object_detection",
            json={"model_id": "shapes/1", "confidence": 0.05, "image": {"type": "url", "value": image_url}},
            timeout=60,
        )
        assert v1.status_code == 200 and boxes(v1.json()["predictions"]) == want
        other = httpx.get(f"{url}/shapes/1", params={"image": "http://example.com/a.jpg"}, timeout=60)
        assert other.status_code == 403 and "allowlist" in other.json()["message"]
        missing = httpx.get(f"{url}/shapes/1", params={"image": image_url + ".nope"}, timeout=60)
        assert missing.status_code == 400 and "HTTP 404" in missing.json()["message"]
        with ThreadPoolExecutor(8) as pool:  # two worker processes share the port
            codes = list(
                pool.map(
                    lambda _: httpx.post(f"{url}/shapes/1", content=b64(images[1]), timeout=60).status_code, range(16)
                )
            )
        assert codes == [200] * 16
    finally:
        proc.terminate()
        proc.wait(20)
        files.shutdown()
