"""ASGI middleware of the server: the request deadline and last-resort error answer, and metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from speedmap.serve.budget import Budget
from speedmap.serve.errors import internal_error, json_response
from speedmap.serve.metrics import ServerMetrics

Scope = dict[str, Any]


class MetricsMiddleware:
    """Requests by route and status, and a latency histogram."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(path, status[0], time.perf_counter() - started)


class GuardMiddleware:
    """Every request under a deadline (504 after ``timeout_s``), holding a :class:`~speedmap.serve.budget.Ticket`
    given back at its end, and answered 500 with a request id (logged once) if a bug escapes."""

    def __init__(self, app: Any, timeout_s: float, budget: Budget) -> None:
        self.app, self.timeout_s, self.budget = app, timeout_s, budget

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = [False]

        async def send_once(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        ticket = self.budget.ticket()
        scope.setdefault("state", {})["ticket"] = ticket
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, send_once)
        except TimeoutError:
            if not started[0]:
                message = f"the request did not finish within the server's {self.timeout_s:g} s deadline"
                await json_response({"message": message}, 504)(scope, receive, send)
        except Exception as exc:  # a bug: never a dead server, never a traceback to the client
            if not started[0]:
                await internal_error(exc, scope)(scope, receive, send)
        finally:
            ticket.release()
