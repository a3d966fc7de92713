"""A test server with a known delay per request (``/delay?ms=``) and an event-loop stall (``/stall``)."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def delay(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("ms", "0")) / 1000)
    return PlainTextResponse("ok")


async def stall(request: Request) -> PlainTextResponse:
    time.sleep(float(request.query_params.get("s", "1")))  # blocks everything, as a GC pause or a hung model
    return PlainTextResponse("stalled")


app = Starlette(routes=[Route("/delay", delay), Route("/stall", stall)])
