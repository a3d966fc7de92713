"""The HTTP API: Roboflow's hosted (legacy) routes and the inference server's v1 routes, on FastAPI.

Fixed routes are registered before the legacy catch-all ``/{project}/{version}``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from speedmap import __version__
from speedmap.detections import Detections
from speedmap.engine import Model, Prepared
from speedmap.imageio import ImageReadError, max_pixels
from speedmap.modelstore import ID_PATTERN
from speedmap.runtime import available_cpus
from speedmap.serve.batcher import Overloaded
from speedmap.serve.metrics import ServerMetrics
from speedmap.serve.registry import Loaded, Registry
from speedmap.serve.requests import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_OVERLAP,
    BadRequest,
    Params,
    class_list,
    legacy_body,
    positive_int,
    threshold,
    v1_request,
)


@dataclass
class ServeConfig:
    """Everything ``speedmap serve`` can set (also passed to worker processes as JSON)."""

    models_dir: str = "models"
    api_key: str | None = None
    workers: int = 1
    threads: int | None = None  # ONNX Runtime intra-op threads per worker (default: cores / workers)
    decode_threads: int | None = None
    providers: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 0.0
    queue_size: int = 256
    timeout_s: float = 30.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = field(default_factory=max_pixels)
    eager: bool = False
    allow_urls: bool = False
    url_allowlist: list[str] = field(default_factory=list)
    url_max_bytes: int = 20 * 1024 * 1024
    url_timeout_s: float = 5.0

    def to_env(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**orjson.loads(os.environ.get("SPEEDMAP_SERVE_CONFIG", "{}")))


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, headers=headers,
                    media_type="application/json")  # fmt: skip


def create_app(cfg: ServeConfig | None = None) -> FastAPI:
    cfg = cfg or ServeConfig()
    cores = available_cpus()
    threads = cfg.threads or max(1, cores // max(1, cfg.workers))
    decode_pool = ThreadPoolExecutor(max_workers=cfg.decode_threads or cores, thread_name_prefix="decode")
    metrics = ServerMetrics()
    server_id = str(uuid.uuid4())
    registry = Registry(Path(cfg.models_dir), cfg.providers, threads, cfg.max_batch, cfg.max_wait_ms,
                        cfg.queue_size, metrics.batch_size.observe)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if cfg.eager:
            for model_id in registry.available():
                await registry.get(model_id)
        yield
        await registry.clear()
        decode_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="speedmap", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.registry, app.state.config, app.state.metrics = registry, cfg, metrics
    metrics.queue_depth.set_function(lambda: sum(lo.batcher.depth for lo in registry.loaded.values()))

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> Response:
        return _json({"message": exc.message}, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return _json({"message": f"invalid request: {exc.errors()[:3]}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return _json({"message": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> Response:  # a bug, never a dead server
        return _json({"message": f"internal error: {exc.__class__.__name__}: {exc}"}, 500)

    def check_key(request: Request, body_key: str | None = None) -> None:
        if cfg.api_key is None:
            return
        given = request.query_params.get("api_key") or body_key or ""
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
            raise BadRequest(401, "missing or wrong API key (query api_key, JSON api_key or Authorization: Bearer)")

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cfg.max_body_bytes:
            raise BadRequest(413, f"request body of {int(length)} bytes is above the {cfg.max_body_bytes} byte limit")
        too_big = BadRequest(413, f"request body is above the {cfg.max_body_bytes} byte limit")
        return await _read_limited(request.stream(), cfg.max_body_bytes, too_big)

    async def fetch_url(url: str) -> bytes:
        if not cfg.allow_urls:
            raise BadRequest(400, "image URLs are disabled on this server (see --allow-url-host); send base64")
        parsed = urlparse(url)
        host = parsed.hostname or ""
        if parsed.scheme not in ("http", "https") or not any(
            host == h or host.endswith("." + h) for h in cfg.url_allowlist
        ):
            raise BadRequest(400, f"image URL host {host!r} is not in the server's allowlist")
        import httpx

        try:
            async with (
                httpx.AsyncClient(timeout=cfg.url_timeout_s, follow_redirects=False) as client,
                client.stream("GET", url) as resp,
            ):
                if resp.status_code != 200:
                    raise BadRequest(400, f"fetching the image URL gave HTTP {resp.status_code}")
                too_big = BadRequest(400, f"the image at the URL is above {cfg.url_max_bytes} bytes")
                return await _read_limited(resp.aiter_bytes(), cfg.url_max_bytes, too_big)
        except httpx.HTTPError as exc:
            raise BadRequest(400, f"fetching the image URL failed: {exc.__class__.__name__}") from None

    def _prepare(model: Model, data: bytes) -> Prepared:
        try:
            return model.prepare(data)
        except ImageReadError as exc:
            raise BadRequest(400, f"bad image: {exc}") from None

    async def infer_one(loaded: Loaded, image: bytes | str, params: Params) -> tuple[Prepared, Detections]:
        data = await fetch_url(image) if isinstance(image, str) else image
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(decode_pool, _prepare, loaded.model, data)
        try:
            det = await loaded.batcher.submit(prepared, params, cfg.timeout_s)
        except Overloaded:
            busy = "server busy: the model's queue is full, retry shortly"
            raise BadRequest(503, busy, {"Retry-After": "1"}) from None
        except TimeoutError:
            raise BadRequest(504, f"inference did not finish within {cfg.timeout_s:g} s") from None
        return prepared, det

    def response_doc(det: Detections, started: float) -> dict[str, Any]:
        return {"inference_id": str(uuid.uuid4()), "time": time.perf_counter() - started, **det.to_roboflow()}

    # ---- open routes
    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok", "models_loaded": list(registry.loaded)})

    @app.get("/info")
    async def info() -> Response:
        return _json({"name": "speedmap", "version": __version__, "uuid": server_id})

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    # ---- v1: model management and inference (what inference-sdk calls)
    @app.get("/model/registry")
    async def model_registry(request: Request) -> Response:
        check_key(request)
        return _json({"models": registry.describe()})

    async def _model_body(request: Request) -> tuple[str, dict[str, Any]]:
        body = await read_body(request)
        try:
            doc = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as exc:
            raise BadRequest(400, f"malformed JSON body: {exc}") from None
        if not isinstance(doc, dict):
            raise BadRequest(422, "the request body must be a JSON object")
        check_key(request, doc.get("api_key"))
        return str(doc.get("model_id", "")), doc

    @app.post("/model/add")
    async def model_add(request: Request) -> Response:
        model_id, _ = await _model_body(request)
        if not model_id:
            raise BadRequest(422, "model_id is required")
        await registry.get(model_id)
        return _json({"models": registry.describe()})

    @app.post("/model/remove")
    async def model_remove(request: Request) -> Response:
        model_id, _ = await _model_body(request)
        await registry.remove(model_id)
        return _json({"models": registry.describe()})

    @app.post("/model/clear")
    async def model_clear(request: Request) -> Response:
        await _model_body(request)
        await registry.clear()
        return _json({"models": registry.describe()})

    @app.post("/infer/object_detection")
    async def infer_v1(request: Request) -> Response:
        started = time.perf_counter()
        model_id, images, as_list, params, key = v1_request(await read_body(request))
        check_key(request, key)
        loaded = await registry.get(model_id)
        results = await asyncio.gather(*(infer_one(loaded, im, params) for im in images), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        docs = [response_doc(det, started) for _, det in results]  # type: ignore[misc]
        elapsed = time.perf_counter() - started
        return _json(docs if as_list else docs[0], headers={"X-Processing-Time": f"{elapsed:.6f}"})

    # ---- the browser page of each model (before the legacy catch-all)
    def web_file(request: Request, project: str, version: str, path: str) -> Response:
        from speedmap.web import ISOLATION_HEADERS, KEY_COOKIE, WebBuildMissing, bundle_path, content_type

        cookie_key = request.cookies.get(KEY_COOKIE)
        check_key(request, cookie_key)
        model_id = f"{project}/{version}"
        if not ID_PATTERN.match(model_id) or not (Path(cfg.models_dir) / model_id / "model.json").is_file():
            known = ", ".join(registry.available()) or "none"
            raise BadRequest(404, f"model {model_id[:100]!r} not found in the model store (available: {known})")
        try:
            file = bundle_path(Path(cfg.models_dir) / model_id, path or "index.html")
        except WebBuildMissing as exc:
            raise BadRequest(503, str(exc)) from None
        if file is None:
            raise BadRequest(404, f"no file {path[:100]!r} in the web bundle of {model_id}")
        resp = FileResponse(file, media_type=content_type(file), headers=ISOLATION_HEADERS)
        if cfg.api_key is not None and request.query_params.get("api_key") and cookie_key is None:
            # the page's own requests (scripts, model) carry the key as a cookie, never in URLs
            resp.set_cookie(KEY_COOKIE, cfg.api_key, path="/web/", httponly=True, samesite="strict")
        return resp

    @app.get("/web/{project}/{version}", include_in_schema=False)
    async def web_root(request: Request, project: str, version: str) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/web/{project}/{version}/{query}", status_code=307)

    @app.get("/web/{project}/{version}/{path:path}", include_in_schema=False)
    async def web_bundle(request: Request, project: str, version: str, path: str) -> Response:
        return await asyncio.to_thread(web_file, request, project, version, path)

    # ---- legacy hosted API (registered last: it is a catch-all)
    async def legacy(request: Request, project: str, version: str) -> Response:
        started = time.perf_counter()
        q = request.query_params
        check_key(request)
        params = Params(
            confidence=threshold(q.get("confidence"), "confidence", DEFAULT_CONFIDENCE),
            overlap=threshold(q.get("overlap"), "overlap", DEFAULT_OVERLAP),
            max_detections=positive_int(q.get("max_detections"), "max_detections", DEFAULT_MAX_DETECTIONS),
            classes=class_list(q.get("classes")),
        )
        fmt = q.get("format", "json")
        if fmt not in ("json", "image"):
            raise BadRequest(400, f"format must be json or image, got {fmt!r}")
        image: bytes | str
        if q.get("image"):
            image = q["image"]
        elif request.method == "GET":
            raise BadRequest(400, "GET needs an image=URL query parameter; POST the image as base64 instead")
        else:
            ctype = request.headers.get("content-type", "")
            body = await read_body(request)
            if ctype.lower().startswith("multipart/form-data"):
                image = await _multipart_file(request, body)
            else:
                image = legacy_body(body, ctype)
        loaded = await registry.get(f"{project}/{version}")
        prepared, det = await infer_one(loaded, image, params)
        elapsed = time.perf_counter() - started
        headers = {"X-Processing-Time": f"{elapsed:.6f}"}
        if fmt == "image":
            from speedmap.annotate import annotate, to_jpeg

            labels = q.get("labels", "on").lower() not in ("off", "false", "0", "no")
            stroke = positive_int(q.get("stroke"), "stroke", 0) if q.get("stroke") else None
            jpeg = await asyncio.get_running_loop().run_in_executor(
                decode_pool, lambda: to_jpeg(annotate(prepared.image, det, labels=labels, stroke=stroke))
            )
            return Response(jpeg, media_type="image/jpeg", headers=headers)
        return _json(response_doc(det, started), headers=headers)

    app.add_api_route("/{project}/{version}", legacy, methods=["POST", "GET"], include_in_schema=True)
    _instrument(app, metrics)
    return app


async def _read_limited(chunks: AsyncIterator[bytes], limit: int, too_big: BadRequest) -> bytes:
    """Read a body stream, failing with ``too_big`` as soon as it passes ``limit`` bytes."""
    out, n = [], 0
    async for chunk in chunks:
        n += len(chunk)
        if n > limit:
            raise too_big
        out.append(chunk)
    return b"".join(out)


async def _multipart_file(request: Request, body: bytes) -> bytes:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form()
    except Exception as exc:
        raise BadRequest(400, f"malformed multipart body: {exc}") from None
    part = form.get("file") or next((v for v in form.values() if hasattr(v, "read")), None)
    if part is None:
        raise BadRequest(400, "multipart body has no 'file' part")
    if isinstance(part, str):
        from speedmap.serve.requests import b64_image

        return b64_image(part, "file field")
    return await part.read()


def _instrument(app: FastAPI, metrics: ServerMetrics) -> None:
    """Requests by route and status and a latency histogram, as a thin ASGI middleware."""
    inner: Callable[..., Awaitable[None]] = app.build_middleware_stack  # type: ignore[assignment]

    class Instrumented:
        def __init__(self, asgi: Any) -> None:
            self.asgi = asgi

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.asgi(scope, receive, send)
            started = time.perf_counter()
            status = [500]

            async def send_wrapper(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.asgi(scope, receive, send_wrapper)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                metrics.observe(path, status[0], time.perf_counter() - started)

    def build() -> Any:
        return Instrumented(inner())

    app.build_middleware_stack = build  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: the config comes in ``SPEEDMAP_SERVE_CONFIG``."""
    return create_app(ServeConfig.from_env())
