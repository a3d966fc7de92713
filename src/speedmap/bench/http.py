"""A lean HTTP/1.1 keep-alive client for load generation: asyncio protocols and the httptools parser
(the C parser uvicorn uses), one request in flight per connection, no per-request allocation beyond the
request bytes. A general client (httpx) spends about 1 ms of CPU per request; this one spends tens of
microseconds, so the client stays far from being the bottleneck (``benchmarks/bench_client_capacity.py``).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools


class HttpStatusError(Exception):
    """A response with a status of 400 or more."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body
        super().__init__(f"HTTP {status_code}: {self.text[:200]}")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Response:
    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        resp = Response(self.parser.get_status_code(), self.headers, b"".join(self.chunks))
        if not self.parser.should_keep_alive():
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(resp)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def request(self, data: bytes) -> asyncio.Future[Response]:
        self.headers, self.chunks = {}, []
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Requests to one origin over a pool of at most ``max_connections`` keep-alive connections."""

    def __init__(self, base_url: str, max_connections: int = 1, timeout: float = 60.0) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if u.scheme == "https" else None
        self.base_path = u.path.rstrip("/")
        self.host_header = u.netloc.encode()
        self.timeout = timeout
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(max(1, max_connections))
        self.open: set[_Connection] = set()

    def build(
        self, path: str, body: bytes = b"", content_type: str = "application/json", method: str = "POST"
    ) -> bytes:
        """The bytes of one request (what a client encodes per request)."""
        head = (
            f"{method} {self.base_path}{path} HTTP/1.1\r\nHost: {self.host_header.decode()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Accept: application/json\r\nUser-Agent: speedmap-bench\r\n\r\n"
        )
        return head.encode() + body

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
        self.open.add(conn)
        return conn

    async def send(self, request: bytes) -> Response:
        """Send prepared request bytes; raises :class:`HttpStatusError` on status >= 400, TimeoutError
        after ``timeout`` seconds, ConnectionError when the connection fails."""
        async with self.slots:
            conn = None
            while self.idle:
                c = self.idle.pop()
                if not c.closed:
                    conn = c
                    break
            if conn is None:
                conn = await asyncio.wait_for(self._connect(), self.timeout)
            try:
                resp = await asyncio.wait_for(conn.request(request), self.timeout)
            except BaseException:
                conn.close()  # a half-read response cannot be reused
                self.open.discard(conn)
                raise
            if conn.closed:
                self.open.discard(conn)
            else:
                self.idle.append(conn)
        if resp.status_code >= 400:
            raise HttpStatusError(resp.status_code, resp.body)
        return resp

    async def aclose(self) -> None:
        for c in list(self.open):
            c.close()
        self.open.clear()
        self.idle.clear()
