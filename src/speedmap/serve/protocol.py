"""uvicorn's HTTP protocol with the limits uvicorn lacks: the request line and headers must arrive
within ``header_timeout_s`` (else 408 and close) and stay under ``max_head_bytes`` (else 431 and close);
HTTP/0.9 and HTTP/1.1 without ``Host`` are refused (400 and close).

Slow-loris clients and megabyte request lines are cut before any application code runs (and before
authentication). Bodies are bounded in time and size by the application (:mod:`speedmap.serve.deps`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from speedmap.serve.config import ServeConfig


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools with a deadline and a size limit on each request's head."""

    header_timeout_s = ServeConfig.header_timeout_s
    max_head_bytes = ServeConfig.max_head_bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def _arm(self) -> None:
        self._disarm()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        version = self.parser.get_http_version()
        if version not in ("1.0", "1.1"):  # HTTP/0.9 has no headers and no status line to answer with
            self._refuse(400, "Bad Request")
            return
        if version == "1.1" and not any(name == b"host" for name, _ in self.headers):
            self._refuse(400, "Bad Request")  # RFC 9112 3.2: a 1.1 request without Host is refused
            return
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        reading_head = self._head_timer is not None
        super().data_received(data)
        if reading_head and self._head_timer is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "Request Header Fields Too Large")

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str) -> None:
        self._disarm()
        body = f"{reason}\n".encode()
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        self.transport.write(head.encode() + body)
        self.transport.close()


def configure(header_timeout_s: float, max_head_bytes: int) -> None:
    """Set the limits of every connection of this process (worker processes read them from
    ``SPEEDMAP_SERVE_CONFIG`` at import)."""
    GuardedHttpToolsProtocol.header_timeout_s = header_timeout_s
    GuardedHttpToolsProtocol.max_head_bytes = max_head_bytes


def _from_env() -> None:
    cfg = ServeConfig.from_env()
    configure(cfg.header_timeout_s, cfg.max_head_bytes)


_from_env()
