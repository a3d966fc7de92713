"""The server's loaded models: ids validated against the store, loaded once (lazily or eagerly), each
with its micro-batcher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from speedmap.engine import Model
from speedmap.errors import SpeedmapError
from speedmap.modelstore import ID_PATTERN, list_models, read_meta
from speedmap.serve.batcher import Batcher
from speedmap.serve.requests import BadRequest


@dataclass
class Loaded:
    model: Model
    batcher: Batcher


class Registry:
    def __init__(self, models_dir: Path, providers: str | None, threads: int | None, max_batch: int,
                 max_wait_ms: float, queue_size: int,
                 on_batch: Callable[[int], None] | None = None) -> None:  # fmt: skip
        self.models_dir, self.providers, self.threads = Path(models_dir), providers, threads
        self.max_batch, self.max_wait_ms, self.queue_size = max_batch, max_wait_ms, queue_size
        self.on_batch = on_batch
        self.loaded: dict[str, Loaded] = {}
        self._lock = asyncio.Lock()

    def available(self) -> list[str]:
        return [m.id for m in list_models(self.models_dir)]

    async def get(self, model_id: str) -> Loaded:
        """The loaded model ``model_id``, loading it from the store on first use (404 if unknown)."""
        found = self.loaded.get(model_id)
        if found is not None:
            return found
        if not ID_PATTERN.match(model_id):  # also what keeps ids inside the store (no '..', no '/x/y/z')
            raise BadRequest(404, f"invalid model id {model_id[:100]!r}: expected project/version")
        async with self._lock:
            found = self.loaded.get(model_id)
            if found is not None:
                return found
            folder = self.models_dir / model_id
            if not (folder / "model.json").is_file():
                known = ", ".join(self.available()) or "none"
                raise BadRequest(404, f"model {model_id!r} not found in the model store (available: {known})")
            try:
                model = await asyncio.to_thread(
                    lambda: Model(read_meta(folder), providers=self.providers, threads=self.threads)
                )
            except SpeedmapError as exc:
                raise BadRequest(500, f"model {model_id!r} cannot be loaded: {exc}") from None
            loaded = Loaded(model, Batcher(model, self.max_batch, self.max_wait_ms, self.queue_size, self.on_batch))
            self.loaded[model_id] = loaded
            return loaded

    async def remove(self, model_id: str) -> None:
        loaded = self.loaded.pop(model_id, None)
        if loaded is not None:
            await loaded.batcher.close()

    async def clear(self) -> None:
        for model_id in list(self.loaded):
            await self.remove(model_id)

    def describe(self) -> list[dict[str, object]]:
        """``GET /model/registry`` entries."""
        return [
            {"model_id": mid, "task_type": "object-detection", "batch_size": lo.batcher.max_batch,
             "input_height": lo.model.imgsz, "input_width": lo.model.imgsz}
            for mid, lo in self.loaded.items()
        ]  # fmt: skip
