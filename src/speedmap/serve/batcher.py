"""Dynamic micro-batching: concurrent requests for one model share a forward pass.

Requests that arrive while a batch runs form the next batch (up to ``max_batch``); with
``max_wait_ms`` > 0 the batcher also waits that long for company before running a batch smaller than
``max_batch``. The queue is bounded: when full, :class:`Overloaded` (HTTP 503 with Retry-After).
Inference runs on one thread per model (ONNX Runtime parallelises inside), off the event loop.
Closing drains: requests already queued still get their answer; only new ones are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from speedmap.detections import Detections
from speedmap.engine import Model, Prepared
from speedmap.serve.errors import Overloaded
from speedmap.serve.requests import Params

__all__ = ["Batcher", "BatcherClosed", "Overloaded"]


class BatcherClosed(Exception):
    """The model was unloaded before this request was queued (load it again and resubmit)."""


@dataclass
class _Item:
    prepared: Prepared
    params: Params
    future: asyncio.Future[Detections] = field(repr=False)


class Batcher:
    """One model's request queue and batch loop (create inside a running event loop)."""

    def __init__(
        self,
        model: Model,
        max_batch: int = 8,
        max_wait_ms: float = 0.0,
        queue_size: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model, self.max_batch, self.max_wait = model, max(1, max_batch), max(0.0, max_wait_ms) / 1000
        if model.batch is not None:  # a fixed-batch graph: never exceed it
            self.max_batch = min(self.max_batch, model.batch)
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{model.id}")
        self.on_batch = on_batch
        self.closing, self._busy = False, False
        self._task = asyncio.get_running_loop().create_task(self._loop())

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    async def submit(self, prepared: Prepared, params: Params, timeout: float) -> Detections:
        if self.closing:
            raise BatcherClosed
        fut: asyncio.Future[Detections] = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Item(prepared, params, fut))
        except asyncio.QueueFull:
            raise Overloaded from None
        return await asyncio.wait_for(fut, timeout)

    async def _gather(self) -> list[_Item]:
        batch = [await self.queue.get()]
        self._busy = True  # from here on, closing waits for this batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return [it for it in batch if not it.future.done()]  # drop requests that already timed out

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not (self.closing and self.queue.empty()):
            batch = await self._gather()
            try:
                if not batch:
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                results = await loop.run_in_executor(self.executor, self._run, batch)
            finally:
                self._busy = False
            for it, res in zip(batch, results, strict=True):
                if it.future.done():
                    continue
                if isinstance(res, BaseException):
                    it.future.set_exception(res)
                else:
                    it.future.set_result(res)

    def _run(self, batch: list[_Item]) -> list[Detections | BaseException]:
        """Forward the batch; if the batch fails, each item alone, so one bad item fails only itself."""
        try:
            preds: list[Any] = list(self.model.forward([it.prepared.square for it in batch]))
        except Exception:
            preds = []
            for it in batch:
                try:
                    preds.append(self.model.forward([it.prepared.square])[0])
                except Exception as exc:
                    preds.append(exc)
        out: list[Detections | BaseException] = []
        for it, pred in zip(batch, preds, strict=True):
            if isinstance(pred, BaseException):
                out.append(pred)
                continue
            p = it.params
            names = self.model.names
            # unknown class names filter nothing in: they match no box, as on the hosted API
            classes = None if p.classes is None else [names.index(c) for c in p.classes if c in names]
            try:
                det = self.model.finish(
                    pred,
                    it.prepared,
                    conf=p.confidence,
                    iou=p.overlap,
                    max_det=p.max_detections,
                    classes=classes,
                    agnostic=p.agnostic,
                )
                out.append(det)
            except Exception as exc:
                out.append(exc)
        return out

    async def close(self, drain_s: float = 30.0) -> None:
        """Refuse new requests, answer the queued ones (for up to ``drain_s``), then stop."""
        self.closing = True
        if self.queue.empty() and not self._busy:
            self._task.cancel()  # idle: it waits on an empty queue
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)
