"""Where requests go: the in-process engine (``local``) or a Roboflow-compatible server (``http://...``,
v1 routes or the legacy route). Each target turns request ``i`` into one inference on image
``i mod n``, raises on failure, and returns the phases of that request in seconds where it can tell
them. :func:`make_target` builds one by kind."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from speedmap.bench.http import HttpClient
from speedmap.bench.results import Phases, Target
from speedmap.errors import SpeedmapError


class LocalTarget:
    """The engine in this process; ``concurrency`` requests run on as many threads. Phases: decode and
    letterbox, the network forward, postprocess; ``queue`` is the wait for a thread."""

    spec: dict[str, Any] | None = None  # runs in this process only: --clients does not apply

    def __init__(
        self, model: Any, images: list[bytes], concurrency: int = 1, load_ms: float | None = None, name: str = "local"
    ) -> None:
        self.model, self.images, self.load_ms, self.name = model, images, load_ms, name
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))

    async def resize(self, concurrency: int) -> None:
        self.pool.shutdown(wait=True)
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))

    def _infer(self, data: bytes, sent: float) -> Phases:
        t0 = time.perf_counter()
        prepared = self.model.prepare(data)
        t1 = time.perf_counter()
        pred = self.model.forward([prepared.square])
        t2 = time.perf_counter()
        self.model.finish(pred[0], prepared)
        t3 = time.perf_counter()
        return {"queue": t0 - sent, "decode_preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}

    async def send(self, i: int) -> Phases:
        data = self.images[i % len(self.images)]
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._infer, data, time.perf_counter())

    async def close(self) -> None:
        self.pool.shutdown(wait=False)


class HttpTarget:
    """A speedmap server or any Roboflow-compatible one, over a keep-alive pool as large as the in-flight
    count. Phases: client encode (base64 + JSON + request bytes), server time (``X-Processing-Time``
    header, else the response's ``time`` field), client decode (parsing the JSON answer);
    network + queue is the rest of the round trip."""

    load_ms: float | None = None  # the server loads the model; its load time is not known here

    def __init__(
        self,
        url: str,
        model_id: str,
        images: list[bytes],
        legacy: bool = False,
        api_key: str | None = None,
        concurrency: int = 1,
        timeout: float = 60.0,
    ) -> None:
        self.name = url
        self.url, self.model_id, self.legacy, self.api_key = url.rstrip("/"), model_id, legacy, api_key
        self.images, self.timeout = images, timeout
        self.client = HttpClient(self.url, concurrency, timeout)
        self.spec: dict[str, Any] | None = {
            "url": url,
            "model_id": model_id,
            "images": images,
            "legacy": legacy,
            "api_key": api_key,
            "timeout": timeout,
        }

    async def resize(self, concurrency: int) -> None:
        """A fresh keep-alive pool sized to the next run's in-flight count."""
        await self.client.aclose()
        self.client = HttpClient(self.url, concurrency, self.timeout)

    def encode(self, i: int) -> bytes:
        b64 = base64.b64encode(self.images[i % len(self.images)])
        if self.legacy:
            query = f"?api_key={self.api_key}" if self.api_key else ""
            return self.client.build(f"/{self.model_id}{query}", b64, "application/x-www-form-urlencoded")
        doc: dict[str, Any] = {"model_id": self.model_id, "image": {"type": "base64", "value": b64.decode()}}
        if self.api_key:
            doc["api_key"] = self.api_key
        return self.client.build("/infer/object_detection", orjson.dumps(doc), "application/json")

    async def send(self, i: int) -> Phases:
        t0 = time.perf_counter()
        request = self.encode(i)
        t1 = time.perf_counter()
        resp = await self.client.send(request)
        t2 = time.perf_counter()
        doc = orjson.loads(resp.body)  # a 200 that is not JSON counts as an error
        t3 = time.perf_counter()
        phases = {"client_encode": t1 - t0, "client_decode": t3 - t2}
        server = resp.headers.get(b"x-processing-time")
        if server is None and isinstance(doc, dict) and isinstance(doc.get("time"), int | float):
            server = doc["time"]
        if server is not None:
            phases["server"] = float(server)
            phases["network_queue"] = max(0.0, t2 - t1 - float(server))
        return phases

    async def close(self) -> None:
        await self.client.aclose()


def make_target(
    kind: str,
    model_id: str,
    blobs: list[bytes],
    *,
    models_dir: str | Path | None = None,
    legacy: bool = False,
    api_key: str | None = None,
    providers: str | None = None,
) -> tuple[Target, dict[str, Any]]:
    """The target of ``kind`` for ``model_id`` sending ``blobs``, and the model's info for provenance.

    ``local``: the engine loaded here from ``models_dir`` on ``providers`` (load time measured; info:
    the engine's). ``local-cuda``: the same on the CUDA provider. ``http://...`` or ``https://...``: a
    Roboflow-compatible server, v1 routes or the ``legacy`` one, with ``api_key`` (info: model id and
    route)."""
    if kind in ("local", "local-cuda"):
        from speedmap.engine import Model

        t = time.perf_counter()
        engine = Model.load(model_id, models_dir=models_dir, providers="cuda" if kind == "local-cuda" else providers)
        load_ms = (time.perf_counter() - t) * 1e3
        return LocalTarget(engine, blobs, load_ms=load_ms, name=kind), engine.info()
    if kind.startswith(("http://", "https://")):
        target = HttpTarget(kind, model_id, blobs, legacy=legacy, api_key=api_key)
        return target, {"model_id": model_id, "route": "legacy" if legacy else "v1"}
    raise SpeedmapError(f"unknown target {kind!r}: local, local-cuda or http://HOST:PORT")


def load_images(folder: Path, limit: int = 200) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)[:limit]
