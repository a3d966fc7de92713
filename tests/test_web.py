"""The browser destination, for real: the model's page served by speedmap and by a plain static server,
run by onnxruntime-web in Debian's headless Chromium, compared with the Python engine; the browser
benchmark; the web bundle export; the /web routes' refusals."""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from speedmap.bench.browser import chromium_available, local_server, open_page, open_url, run_browser_benchmark
from speedmap.bench.results import BenchReport
from speedmap.cli import app
from speedmap.engine import Model
from speedmap.web import VENDOR_DIR, WebBuildMissing

needs_chromium = pytest.mark.skipif(
    not chromium_available(), reason="Chromium and chromedriver absent: apt-get install chromium chromium-driver"
)


def _web_built() -> bool:
    from speedmap.web import vendor_manifest

    try:
        vendor_manifest()
    except WebBuildMissing:
        return False
    return True


needs_web_build = pytest.mark.skipif(
    not _web_built(), reason="the page's runtime is not built: npm ci --prefix web && npm run build --prefix web"
)
CONF, IOU = 0.05, 0.45  # a low threshold: many boxes, close scores, real NMS work


@pytest.fixture(scope="module")
def images(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four dataset images (at the model's input size) and three resized copies: downscaled PNG and JPEG,
    upscaled PNG, so the letterbox's resize runs both ways."""
    data = Path(json.loads((tiny_run / "train.json").read_text())["dataset"]["abspath"])
    found = sorted(data.rglob("*.jpg"))[:4]
    out = tmp_path_factory.mktemp("web_images")
    for k, (w, h, fmt) in enumerate([(301, 170, "JPEG"), (37, 53, "PNG"), (640, 481, "PNG")]):
        path = out / f"resized{k}.{fmt.lower()}"
        Image.open(found[k]).convert("RGB").resize((w, h), Image.BICUBIC).save(path, fmt)
        found.append(path)
    return found


@pytest.fixture(scope="module")
def server(model_store: Path) -> Iterator[str]:
    with local_server(model_store) as url:
        yield url


def _assert_same(web: list[dict], det: object) -> None:
    assert len(web) == len(det.xyxy)  # type: ignore[attr-defined]
    assert [d["classId"] for d in web] == det.class_id.tolist()  # type: ignore[attr-defined]
    if web:
        boxes = np.array([d["box"] for d in web])
        assert np.abs(boxes - det.xyxy).max() <= 1.0  # type: ignore[attr-defined]
        assert np.abs(np.array([d["confidence"] for d in web]) - det.confidence).max() < 1e-3  # type: ignore[attr-defined]


@needs_web_build
def test_page_is_served_cross_origin_isolated(server: str) -> None:
    r = httpx.get(f"{server}/web/shapes/1/")
    assert r.status_code == 200 and "<title>speedmap detector</title>" in r.text
    assert r.headers["cross-origin-opener-policy"] == "same-origin"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    assert r.headers["content-type"].startswith("text/html")
    r = httpx.get(f"{server}/web/shapes/1?backend=wasm")
    assert r.status_code == 307 and r.headers["location"] == "/web/shapes/1/?backend=wasm"
    for path, ctype in [
        ("app.js", "text/javascript"),
        ("vendor/ort-wasm-simd-threaded.mjs", "text/javascript"),
        ("vendor/ort-wasm-simd-threaded.wasm", "application/wasm"),
        ("model.json", "application/json"),
    ]:
        r = httpx.get(f"{server}/web/shapes/1/{path}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), path
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"


@needs_web_build
def test_web_routes_refuse_unknown_models_and_other_files(server: str, model_store: Path) -> None:
    r = httpx.get(f"{server}/web/nope/9/")
    assert r.status_code == 404 and "nope/9" in r.json()["message"]
    for path in [
        "server.py",
        "vendor/missing.wasm",
        "vendor/../../app.py",
        "..%2f..%2f__init__.py",
        "%2e%2e/1/model.json",
    ]:
        r = httpx.get(f"{server}/web/shapes/1/{path}", follow_redirects=True)  # httpx resolves dot segments
        assert r.status_code == 404 and "message" in r.json(), path
    # a client that sends dot segments as they are (httpx would normalise them)
    host, port = server.removeprefix("http://").split(":")
    for raw in [
        "/web/shapes/1/../../../../etc/passwd",
        "/web/shapes/1/vendor/../../../web/__init__.py",
        "/web/../../1/model.json",
        "/web/shapes/..%2f..%2f/model.json",
    ]:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", raw)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status in (400, 404), raw
        assert b"root:" not in body and b"import" not in body


@needs_web_build
def test_web_routes_follow_the_api_key(model_store: Path) -> None:
    with local_server(model_store, api_key="k3y") as url:
        assert httpx.get(f"{url}/web/shapes/1/").status_code == 401
        with httpx.Client() as client:
            r = client.get(f"{url}/web/shapes/1/?api_key=k3y")
            assert r.status_code == 200
            cookie = r.headers["set-cookie"]
            assert all(a in cookie for a in ("HttpOnly", "Secure", "SameSite=strict", "Path=/web/")), cookie
            # the page's own requests carry a token derived from the key as a cookie, never the key itself
            # (Secure: browsers send it to a loopback host over http; httpx's jar does not: sent by hand)
            token = cookie.split(";")[0].split("=", 1)[1]
            assert "k3y" not in token and len(token) == 64
            cookies = {"speedmap_api_key": token}
            assert client.get(f"{url}/web/shapes/1/model.onnx", cookies={"speedmap_api_key": "k3y"}).status_code == 401
            assert client.get(f"{url}/web/shapes/1/model.onnx", cookies=cookies).status_code == 200
            # the redirect never echoes the key in its Location
            r = client.get(f"{url}/web/shapes/1?api_key=k3y&backend=wasm")
            assert r.status_code == 307 and r.headers["location"] == "/web/shapes/1/?backend=wasm"
            # the public model.json has no training paths
            meta = client.get(f"{url}/web/shapes/1/model.json", cookies=cookies).json()
            assert meta["classes"] and "training" not in meta and str(model_store) not in json.dumps(meta)


@needs_chromium
@needs_web_build
def test_page_detections_match_the_python_engine(model_store: Path, images: list[Path]) -> None:
    engine = Model.load("shapes/1", models_dir=model_store)
    blobs = [p.read_bytes() for p in images]
    with open_page("shapes/1", model_store) as page:
        info = page.info()
        web = page.detect(blobs, conf=CONF, iou=IOU)
        assert page.console_errors() == []
    assert info["cross_origin_isolated"] is True
    assert info["backend"] == "wasm" and info["threads"] == info["hardware_concurrency"]
    assert 0 < info["timer_resolution_ms"] < 0.1  # isolated pages get the fine timer
    assert sum(len(w) for w in web) > 0
    for blob, found in zip(blobs, web, strict=True):
        _assert_same(found, engine.predict(blob, conf=CONF, iou=IOU))


@needs_chromium
@needs_web_build
def test_browser_benchmark_json(model_store: Path, images: list[Path]) -> None:
    report, runs = run_browser_benchmark("shapes/1", images[:4], model_store, requests=30, warmup=3, duration=1.0)
    doc = report.to_json()
    json.dumps(doc)
    assert BenchReport.from_json(doc) == report
    assert report.target == "browser" and report.model == "shapes/1"
    prov = report.provenance
    assert prov["browser"].startswith("Chromium ") and prov["backend"] == "wasm" and prov["target"] == "browser"
    assert prov["cross_origin_isolated"] is True and prov["threads"] >= 1
    assert 0 < prov["timer_resolution_ms"] < 0.1
    assert prov["onnxruntime_web"] and prov["model"]["runtime"] == "onnxruntime-web"
    warm = report.warmup
    assert warm["page_load_ms"] > 0 and warm["session_create_ms"] > 0 and warm["cold_first_request_ms"] > 0
    assert warm["requests"] == 3
    (run,) = report.runs
    assert report.single() is run and run.concurrency == 1 and run.tries == 1
    assert run.requests >= 30 and runs[0].recorder.count == run.requests and not run.errors
    assert run.duration_s >= 1.0 and len(run.window_rps) >= 3
    assert 0 < run.latency_ms["p50"] <= run.latency_ms["max"]


@needs_chromium
@needs_web_build
def test_bench_browser_command(model_store: Path, images: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in images[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "browser.json"
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "browser",
            "--model",
            "shapes/1",
            "--models",
            str(model_store),
            "--images",
            str(folder),
            "--scenario",
            "single",
            "--requests",
            "30",
            "--warmup",
            "2",
            "--duration",
            "0.5",
            "--backend",
            "wasm",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["target"] == "browser" and doc["runs"][0]["requests"] >= 30 and not doc["runs"][0]["errors"]
    flat = " ".join(r.output.split())
    assert "page load" in flat and "session create" in flat
    assert (tmp_path / "latency_cdf.png").is_file() and (tmp_path / "browser.csv").is_file()
    bad = CliRunner().invoke(
        app,
        [
            "bench",
            "browser",
            "--model",
            "shapes/1",
            "--models",
            str(model_store),
            "--images",
            str(folder),
            "--scenario",
            "rate",
            "--rate",
            "5",
        ],
    )
    assert bad.exit_code == 2 and "single scenario only" in bad.output


@needs_chromium
@needs_web_build
def test_export_web_bundle_runs_from_a_plain_static_server(
    model_store: Path, images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "bundle"
    r = CliRunner().invoke(
        app, ["export", "shapes/1", "--format", "web", "--models", str(model_store), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "index.html",
        "app.js",
        "detector.js",
        "model.json",
        "model.onnx",
        "_headers",
        "vendor/ort.wasm.min.mjs",
        "vendor/ort-wasm-simd-threaded.wasm",
    } <= names
    assert (out / "model.onnx").read_bytes() == (model_store / "shapes" / "1" / "model.onnx").read_bytes()
    # exporting again replaces the bundle; a folder with other files is refused
    assert (
        CliRunner()
        .invoke(app, ["export", str(model_store / "shapes" / "1"), "--format", "web", "--out", str(out)])
        .exit_code
        == 0
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    r = CliRunner().invoke(
        app, ["export", "shapes/1", "--format", "web", "--models", str(model_store), "--out", str(tmp_path / "other")]
    )
    assert r.exit_code == 2 and "not an empty folder" in r.output

    class Handler(http.server.SimpleHTTPRequestHandler):  # any static host that sends the two headers
        extensions_map: ClassVar[dict[str, str]] = {
            ".wasm": "application/wasm",
            ".mjs": "text/javascript",
            ".js": "text/javascript",
        }

        def end_headers(self) -> None:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            super().end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(out)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with open_url(f"http://127.0.0.1:{httpd.server_address[1]}/index.html") as page:
            assert page.info()["cross_origin_isolated"] is True
            web = page.detect([images[0].read_bytes()], conf=CONF, iou=IOU)
    finally:
        httpd.shutdown()
    _assert_same(web[0], Model.load(model_store / "shapes" / "1").predict(images[0], conf=CONF, iou=IOU))


@needs_web_build
def test_missing_runtime_build_names_the_command(
    model_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (VENDOR_DIR / "manifest.json").is_file(), "run `npm ci --prefix web && npm run build --prefix web`"
    monkeypatch.setattr("speedmap.web.VENDOR_DIR", tmp_path / "vendor")
    from speedmap.web import bundle_files

    with pytest.raises(WebBuildMissing, match="npm ci"):
        bundle_files()
    r = CliRunner().invoke(
        app, ["export", "shapes/1", "--format", "web", "--models", str(model_store), "--out", str(tmp_path / "b")]
    )
    assert r.exit_code == 2 and "npm run build --prefix web" in r.output
    r = CliRunner().invoke(app, ["export", "shapes/1", "--format", "web", "--int8", "x", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--int8" in r.output


def test_export_rejects_unknown_format(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["export", "x/1", "--format", "tflite", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "onnx or web" in r.output
