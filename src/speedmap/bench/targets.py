"""Where requests go: the in-process engine (``local``) or a Roboflow-compatible server (``http://...``,
v1 routes or the legacy route). Each target turns request ``i`` into one inference on image
``i mod n`` and raises on failure."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


class LocalTarget:
    """The engine in this process; ``concurrency`` requests run on as many threads."""

    name = "local"

    def __init__(self, model: Any, images: list[bytes], concurrency: int = 1) -> None:
        self.model, self.images = model, images
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))

    async def resize(self, concurrency: int) -> None:
        self.pool.shutdown(wait=True)
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency))

    async def send(self, i: int) -> None:
        data = self.images[i % len(self.images)]
        await asyncio.get_running_loop().run_in_executor(self.pool, self.model.predict, data)

    async def close(self) -> None:
        self.pool.shutdown(wait=False)


class HttpTarget:
    """A speedmap server or any Roboflow-compatible one; keep-alive pool as large as the in-flight count."""

    def __init__(self, url: str, model_id: str, images: list[bytes], legacy: bool = False,
                 api_key: str | None = None, concurrency: int = 1, timeout: float = 60.0) -> None:  # fmt: skip
        import httpx

        self.name = url
        self.url, self.model_id, self.legacy, self.api_key, self.timeout = (
            url.rstrip("/"),
            model_id,
            legacy,
            api_key,
            timeout,
        )
        self.bodies = [base64.b64encode(b).decode() for b in images]
        self._httpx = httpx
        self.client = self._client(concurrency)

    def _client(self, concurrency: int) -> Any:
        limits = self._httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency))
        return self._httpx.AsyncClient(limits=limits, timeout=self.timeout)

    async def resize(self, concurrency: int) -> None:
        """A fresh keep-alive pool sized to the next run's in-flight count."""
        await self.client.aclose()
        self.client = self._client(concurrency)

    async def send(self, i: int) -> None:
        body = self.bodies[i % len(self.bodies)]
        params = {"api_key": self.api_key} if self.api_key else {}
        if self.legacy:
            r = await self.client.post(f"{self.url}/{self.model_id}", params=params, content=body,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        else:
            doc = {"model_id": self.model_id, "image": {"type": "base64", "value": body}}
            if self.api_key:
                doc["api_key"] = self.api_key
            r = await self.client.post(f"{self.url}/infer/object_detection", json=doc)
        r.raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()


def load_images(folder: Path, limit: int = 200) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)[:limit]
