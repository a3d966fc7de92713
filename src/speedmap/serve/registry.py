"""The server's loaded models: found in the store by id (:func:`speedmap.modelstore.find`), loaded once
(lazily or eagerly), each with its micro-batcher. Errors are domain errors; the app maps them to HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speedmap.engine import Model
from speedmap.errors import SpeedmapError
from speedmap.modelstore import ModelFormatError, find, list_models
from speedmap.serve.batcher import Batcher

log = logging.getLogger("speedmap.serve")


@dataclass
class Loaded:
    model: Model
    batcher: Batcher


class Registry:
    def __init__(
        self,
        models_dir: Path,
        providers: str | None,
        threads: int | None,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.models_dir, self.providers, self.threads = Path(models_dir), providers, threads
        self.max_batch, self.max_wait_ms, self.queue_size = max_batch, max_wait_ms, queue_size
        self.on_batch = on_batch
        self.loaded: dict[str, Loaded] = {}
        self._lock = asyncio.Lock()
        self._draining: set[asyncio.Task[None]] = set()

    def available(self) -> list[str]:
        return [m.id for m in list_models(self.models_dir)]

    async def get(self, model_id: str) -> Loaded:
        """The loaded model ``model_id``, loading it from the store on first use."""
        found = self.loaded.get(model_id)
        if found is not None:
            return found
        async with self._lock:
            found = self.loaded.get(model_id)
            if found is not None:
                return found
            meta = find(self.models_dir, model_id)
            try:
                model = await asyncio.to_thread(Model, meta, providers=self.providers, threads=self.threads)
            except SpeedmapError as exc:
                log.error("model %s cannot be loaded: %s", model_id, exc)
                raise ModelFormatError(f"model {model_id!r} cannot be loaded (see the server log)") from None
            loaded = Loaded(model, Batcher(model, self.max_batch, self.max_wait_ms, self.queue_size, self.on_batch))
            self.loaded[model_id] = loaded
            return loaded

    async def remove(self, model_id: str) -> None:
        """Unload a model: new requests load it again; those already queued finish on it (in the background,
        so that the caller's answer does not wait for them)."""
        loaded = self.loaded.pop(model_id, None)
        if loaded is not None:
            task = asyncio.get_running_loop().create_task(loaded.batcher.close())
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def clear(self) -> None:
        for model_id in list(self.loaded):
            await self.remove(model_id)

    async def close(self) -> None:
        """Unload everything and wait for the queued requests (server shutdown)."""
        await self.clear()
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)

    def describe(self) -> list[dict[str, object]]:
        """``GET /model/registry`` entries."""
        return [
            {
                "model_id": mid,
                "task_type": "object-detection",
                "batch_size": lo.batcher.max_batch,
                "input_height": lo.model.imgsz,
                "input_width": lo.model.imgsz,
            }
            for mid, lo in self.loaded.items()
        ]
