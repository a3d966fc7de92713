"""A test server with a known delay per request (``/delay?ms=``), an event-loop stall (``/stall``), a
Roboflow-shaped inference route whose model id sets the delay (``model_id: "delay/150"`` waits 150 ms
and says so in ``X-Processing-Time``), and HTTP corner cases for the benchmark client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


async def delay(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("ms", "0")) / 1000)
    return PlainTextResponse("ok")


async def stall(request: Request) -> PlainTextResponse:
    time.sleep(float(request.query_params.get("s", "1")))  # blocks everything, as a GC pause or a hung model
    return PlainTextResponse("stalled")


async def infer(request: Request) -> Response:
    doc = json.loads(await request.body())
    seconds = float(doc["model_id"].split("/")[1]) / 1000
    await asyncio.sleep(seconds)
    body = json.dumps({"time": seconds, "image": {"width": 64, "height": 64}, "predictions": []})
    return Response(body, media_type="application/json", headers={"X-Processing-Time": f"{seconds:.6f}"})


async def close(request: Request) -> PlainTextResponse:
    return PlainTextResponse('{"closing": true}', headers={"Connection": "close"})


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b'{"parts": ', b"[1, 2, ", b"3]}"):
            yield part

    return StreamingResponse(parts(), media_type="application/json")


app = Starlette(
    routes=[
        Route("/delay", delay),
        Route("/stall", stall),
        Route("/infer/object_detection", infer, methods=["POST"]),
        Route("/close", close),
        Route("/chunked", chunked),
    ]
)
