"""One image through the server: fetch (URL), decode within the request's pixel and byte budget,
micro-batched inference, and the optional drawing. Shared by the v1 and legacy routes."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from speedmap.detections import Detections
from speedmap.engine import Model, Prepared
from speedmap.imageio import stored_size
from speedmap.serve.batcher import BatcherClosed
from speedmap.serve.budget import Ticket
from speedmap.serve.errors import BadRequest
from speedmap.serve.registry import Loaded
from speedmap.serve.requests import MAX_STROKE, Params
from speedmap.serve.state import ServerState
from speedmap.serve.urls import fetch_image

# Decoding holds about two RGB copies at its peak (decoder output + converted); WebP goes through libwebp's
# animation decoder, which holds two canvases and a frame besides (measured 5.4x the RGB output).
DECODE_OVERHEAD, WEBP_OVERHEAD = 2, 6


def _overhead(data: bytes) -> int:
    return WEBP_OVERHEAD if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else DECODE_OVERHEAD


@dataclass
class Job:
    """What one request may still spend: pixels (``--max-pixels`` over all its images) and its ticket."""

    state: ServerState
    ticket: Ticket
    pixels_left: int
    keep_images: bool = False  # only to draw on them
    lock: threading.Lock = field(default_factory=threading.Lock)  # its images decode on several threads

    def spend_pixels(self, n: int) -> None:
        with self.lock:
            if n > self.pixels_left:
                limit = self.state.cfg.max_pixels
                raise BadRequest(413, f"the images of this request pass the server's {limit / 1e6:g} MP pixel limit")
            self.pixels_left -= n


async def image_bytes(job: Job, image: bytes | str) -> bytes:
    """The encoded image: as sent, or fetched from its URL under the server's URL policy."""
    if isinstance(image, bytes):
        return image
    if job.state.urls is None:
        raise BadRequest(400, "image URLs are disabled on this server (see --allow-url-host); send base64")
    data = await fetch_image(image, job.state.urls)
    job.ticket.take(len(data))
    return data


def _decode(job: Job, model: Model, data: bytes) -> Prepared:
    """Decode and letterbox (on a decode thread), refusing before any pixel is allocated an image that would
    take the request past its pixel limit or the server past its bytes in flight."""
    w, h = stored_size(data)  # header only
    job.spend_pixels(w * h)
    peak = _overhead(data) * w * h * 3
    job.ticket.take(peak)
    try:
        prepared = model.prepare(data)
    finally:
        job.ticket.give(peak)
    if not job.keep_images:
        prepared = prepared.without_image()
    job.ticket.take(prepared.square.nbytes + (prepared.image.nbytes if prepared.image is not None else 0))
    return prepared


async def decode(job: Job, model: Model, data: bytes) -> Prepared:
    """:func:`_decode` on the server's decode threads."""
    return await asyncio.get_running_loop().run_in_executor(job.state.decode_pool, _decode, job, model, data)


async def infer_one(job: Job, model_id: str, image: bytes | str, params: Params) -> tuple[Prepared, Detections]:
    """One image of a request, to detections (the model is loaded again if it was unloaded meanwhile)."""
    data = await image_bytes(job, image)
    registry = job.state.registry
    loaded: Loaded = await registry.get(model_id)
    prepared = await decode(job, loaded.model, data)
    del data
    for _ in range(3):
        try:
            return prepared, await loaded.batcher.submit(prepared, params, job.state.cfg.timeout_s)
        except BatcherClosed:
            loaded = await registry.get(model_id)
        except TimeoutError:
            raise BadRequest(504, f"inference did not finish within {job.state.cfg.timeout_s:g} s") from None
    raise BadRequest(503, "the model is being unloaded and loaded again; retry", {"Retry-After": "1"})


def _render(prepared: Prepared, det: Detections, labels: bool, stroke: int | None) -> bytes:
    from speedmap.annotate import annotate, to_jpeg

    assert prepared.image is not None
    h, w = prepared.image.shape[:2]
    if stroke is not None:  # bounded by construction: at most MAX_STROKE and a quarter of the smaller side
        stroke = max(1, min(stroke, MAX_STROKE, max(1, min(w, h) // 4)))
    return to_jpeg(annotate(prepared.image, det, labels=labels, stroke=stroke))


async def render(job: Job, prepared: Prepared, det: Detections, labels: bool, stroke: int | None) -> bytes:
    """The image with the detections drawn, as JPEG (on the decode threads)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(job.state.decode_pool, _render, prepared, det, labels, stroke)


def response_doc(det: Detections, started: float, visualization: bytes | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "inference_id": str(uuid.uuid4()),
        "time": time.perf_counter() - started,
        **det.to_roboflow(),
    }
    if visualization is not None:
        doc["visualization"] = base64.b64encode(visualization).decode()
    return doc
