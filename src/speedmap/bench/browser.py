"""The web browser destination: the model's page (onnxruntime-web) in a real headless Chromium, driven
over WebDriver (Debian's ``chromium`` and ``chromedriver``), served by speedmap's own server.

Timings are taken inside the page with ``performance.now()`` under cross-origin isolation, one
inference after another, from the encoded image to the final detections; page load and session
creation are reported apart."""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from speedmap.bench.loadgen import RunResult
from speedmap.bench.recorder import Recorder
from speedmap.bench.results import BenchReport
from speedmap.bench.run import contention_warning
from speedmap.cpustat import CpuMeter
from speedmap.errors import MissingExtra, SpeedmapError
from speedmap.modelstore import ModelMeta, resolve
from speedmap.web import vendor_manifest

CHROMIUM = os.environ.get("SPEEDMAP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SPEEDMAP_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
INSTALL_HINT = "install them with `apt-get install chromium chromium-driver` (Debian/Ubuntu)"
BACKENDS = ("wasm", "webgpu")
# the page's per-inference stages, named as the recorder's phases
PHASES = {"decode": "decode", "preprocess": "letterbox", "run": "model", "postprocess": "nms"}


class BrowserError(SpeedmapError):
    """Chromium is missing, or the page failed (the message holds the page's errors)."""


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


@contextmanager
def local_server(models_dir: str | Path, api_key: str | None = None) -> Iterator[str]:
    """speedmap's server on 127.0.0.1 (a free port) in a background thread; yields its base URL."""
    import uvicorn

    from speedmap.serve.app import ServeConfig, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(ServeConfig(models_dir=str(models_dir), api_key=api_key))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="speedmap-web")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise BrowserError("the local server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, under chromedriver; always quit and cleaned up."""
    if not chromium_available():
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
        raise BrowserError(
            f"the browser benchmark needs Chromium and chromedriver ({', '.join(missing)} missing): {INSTALL_HINT}"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise MissingExtra("the browser benchmark", "browser", exc) from None
    profile = tempfile.mkdtemp(prefix="speedmap-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER, log_output=subprocess.DEVNULL))
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class BrowserPage:
    """The model's page, loaded and ready (model fetched, session created)."""

    driver: Any
    url: str

    @property
    def browser(self) -> str:
        caps = self.driver.capabilities
        name = "Chromium" if "chromium" in CHROMIUM else caps.get("browserName", "browser")
        return f"{name} {caps.get('browserVersion', '?')}"

    def console_errors(self) -> list[str]:
        try:
            logs = self.driver.get_log("browser")
        except Exception:  # not every driver keeps logs
            return []
        return [e["message"] for e in logs if e.get("level") == "SEVERE"]

    def call(self, script: str, *args: Any, timeout: float = 120.0) -> Any:
        """Run ``script`` (a function body; a returned promise is awaited); page failures raise
        :class:`BrowserError` with the page's own error messages."""
        from selenium.common.exceptions import WebDriverException

        self.driver.set_script_timeout(timeout)
        try:
            return self.driver.execute_script(script, *args)
        except WebDriverException as exc:
            msg = (exc.msg or str(exc)).split("\n")[0]
            console = self.console_errors()
            raise BrowserError(
                f"the page {self.url} failed: {msg}" + (f"; console: {' | '.join(console[-5:])}" if console else "")
            ) from None

    def info(self) -> dict[str, Any]:
        return self.call("return window.speedmap.info()")

    def detect(self, images: list[bytes], conf: float = 0.25, iou: float = 0.45, max_det: int = 300) -> list[list]:
        """The page's detections per image: ``[{box: [x1, y1, x2, y2], confidence, classId, className}]``."""
        b64 = [base64.b64encode(b).decode() for b in images]
        opts = {"conf": conf, "iou": iou, "maxDet": max_det}
        return self.call("return window.speedmap.detect(arguments[0], arguments[1])", b64, opts)

    def bench(self, images: list[bytes], warmup: int, requests: int, duration: float, timeout: float) -> dict:
        b64 = [base64.b64encode(b).decode() for b in images]
        args = {"images": b64, "warmup": warmup, "requests": requests, "duration": duration}
        return self.call("return window.speedmap.bench(arguments[0])", args, timeout=timeout)


@contextmanager
def open_page(
    model: str | Path, models_dir: str | Path | None = None, backend: str = "wasm", threads: int | None = None
) -> Iterator[BrowserPage]:
    """Serve the model's web bundle locally, open it in headless Chromium and wait until the model is
    ready; the browser and the server are stopped on exit."""
    if backend not in BACKENDS:
        raise SpeedmapError(f"unknown backend {backend!r}: {' or '.join(BACKENDS)}")
    meta = resolve(model, models_dir)
    vendor_manifest()  # the build command, before starting anything
    store = meta.path.resolve().parent.parent
    query = {"backend": backend, **({"threads": threads} if threads else {})}
    with local_server(store) as base, open_url(f"{base}/web/{meta.id}/?{urlencode(query)}") as page:
        yield page


@contextmanager
def open_url(url: str) -> Iterator[BrowserPage]:
    """Open a web bundle's page (served at ``url``) in headless Chromium and wait until its model is ready."""
    with chromium() as driver:
        driver.set_page_load_timeout(60)
        driver.get(url)
        page = BrowserPage(driver, url)
        ok = page.call("return window.speedmap ? window.speedmap.ready.then(() => true) : false")
        if not ok:
            console = page.console_errors()
            raise BrowserError(
                f"the page {url} did not start its script"
                + (f"; console: {' | '.join(console[-5:])}" if console else "")
            )
        yield page


def _window_rates(completions_s: list[float], end_s: float, width: float) -> list[float]:
    """Completions per window of ``width`` seconds, the last partial window left out (as loadgen does)."""
    counts = [0] * (int(end_s / width) + 1)
    for t in completions_s:
        counts[min(int(t / width), len(counts) - 1)] += 1
    return [c / width for c in counts[: int(end_s / width)]]


def run_browser_benchmark(
    model: str | Path,
    images: list[Path],
    models_dir: str | Path | None = None,
    requests: int = 100,
    warmup: int = 10,
    duration: float = 10.0,
    backend: str = "wasm",
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[BenchReport, list[RunResult]]:
    """Benchmark ``model`` in headless Chromium: the single-stream scenario (one inference after another,
    at least ``requests`` and ``duration`` seconds) after ``warmup`` inferences. Returns the same report
    and runs as :func:`speedmap.bench.run.benchmark`, with the browser's provenance. The page runs once:
    an UNSTABLE run is not tried again here."""
    from speedmap.bench.run import BenchConfig, provenance

    if not images:
        raise SpeedmapError("no images to benchmark with")
    if requests < 1 or warmup < 0 or duration < 0:
        raise SpeedmapError("--requests must be at least 1, --warmup and --duration not negative")
    blobs = [Path(p).read_bytes() for p in images]
    meta = resolve(model, models_dir)
    manifest = vendor_manifest()
    cfg = BenchConfig(
        scenario="single", concurrency=[1], duration=duration, requests=requests, warmup=warmup, retry_unstable=False
    )
    prov = provenance("browser", _model_info(meta, manifest), blobs, cfg)
    timeout = 120 + 2 * duration + 5 * (requests + warmup)
    t0 = time.perf_counter()
    with open_page(meta.path, backend=backend, threads=threads) as page:
        ready_s = time.perf_counter() - t0
        if progress is not None:
            progress(f"page ready in {ready_s:.1f} s; running single (at least {duration:g} s and {requests} requests)")
        meter = CpuMeter(own_pids=[os.getpid()])  # the browser and the page's server are ours
        res = page.bench(blobs, warmup, requests, duration, timeout)
        share = meter.stop().other_share
        browser = page.browser
        console = page.console_errors()
    run = _single_run(res, duration, share)
    prov.update(_page_provenance(res, browser, console, manifest))
    return BenchReport("browser", meta.id, prov, _warmup_info(res), [run.summary()]), [run]


def _model_info(meta: ModelMeta, manifest: dict[str, Any]) -> dict[str, Any]:
    """The model part of the provenance, as the other destinations state it."""
    d = meta.doc
    return {
        "model_id": meta.id,
        "path": str(meta.path),
        "size": d.get("size"),
        "precision": d.get("precision", "fp32"),
        "imgsz": meta.imgsz,
        "batch": 1,
        "runtime": "onnxruntime-web",
        "onnxruntime_web": manifest.get("onnxruntime-web"),
    }


def _single_run(res: dict[str, Any], duration: float, other_cpu_share: float | None = None) -> RunResult:
    """The page's timings as a single-stream run: latencies, per-stage phases, windowed rates and the
    share of the CPU other processes took meanwhile."""
    rec = Recorder()
    for i, ms in enumerate(res["timings_ms"]):
        rec.record(ms / 1e3)
        for key, name in PHASES.items():  # the per-stage breakdown
            rec.phase(name, res["stages_ms"][key][i] / 1e3)
    duration_s = res["duration_ms"] / 1e3
    width = max(0.25, min(1.0, duration / 5))
    rates = _window_rates([t / 1e3 for t in res["completions_ms"]], duration_s, width)
    run = RunResult("single", 1, None, rec, duration_s, rates, other_cpu_share=other_cpu_share)
    run.attempts = [
        {"duration_s": duration_s, "min_duration_s": duration, "valid": run.valid, "other_cpu_share": other_cpu_share}
    ]
    run.warnings = contention_warning(run)
    return run


def _page_provenance(res: dict[str, Any], browser: str, console: list[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """What the page reported about the browser, backend and timer, stamped with the time it finished."""
    return {
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "browser": browser,
        "user_agent": res["user_agent"],
        "browser_flags": CHROMIUM_FLAGS,
        "backend": res["backend"],
        "requested_backend": res["requested_backend"],
        "backend_note": res["note"] or None,
        "threads": res["threads"],
        "hardware_concurrency": res["hardware_concurrency"],
        "cross_origin_isolated": res["cross_origin_isolated"],
        "timer": "performance.now() in the page",
        "timer_resolution_ms": res["timer_resolution_ms"],
        "onnxruntime_web": res["onnxruntime_web"] or manifest.get("onnxruntime-web"),
        "page_errors": console,
    }


def _warmup_info(res: dict[str, Any]) -> dict[str, Any]:
    """Page load, model fetch and session creation, and the warm-up requests (the first one cold)."""
    warm_ms = res["warmup_ms"]
    return {
        "page_load_ms": res["page_load_ms"],
        "model_fetch_ms": res["model_fetch_ms"],
        "session_create_ms": res["session_create_ms"],
        "cold_first_request_ms": warm_ms[0],
        "requests": len(warm_ms),
        "seconds": res["warmup_seconds"],
    }
