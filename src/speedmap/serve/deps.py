"""Request dependencies: the API key check and bounded body reading (size, time, bytes in flight)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from fastapi import Request
from starlette.requests import ClientDisconnect

from speedmap.serve.budget import Ticket
from speedmap.serve.errors import BadRequest
from speedmap.serve.state import get_state

KEY_HELP = "missing or wrong API key (query api_key, JSON api_key or Authorization: Bearer)"


def given_key(request: Request, body_key: object = None) -> str:
    """The key a request carries: query ``api_key``, then the JSON body's, then Bearer."""
    for key in (request.query_params.get("api_key"), body_key):
        if isinstance(key, str) and key:
            return key
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def cookie_token(key: str) -> str:
    """What the browser page's cookie holds: derived from the key, so that no response ever carries the key."""
    return hmac.new(key.encode(), b"speedmap web page", hashlib.sha256).hexdigest()


def check_key(request: Request, body_key: object = None, cookie: str | None = None) -> None:
    """401 unless the server has no key or the request carries it, or the page's cookie token (compared in
    constant time)."""
    expected = get_state(request).cfg.api_key
    if expected is None:
        return
    if cookie and hmac.compare_digest(cookie.encode(), cookie_token(expected).encode()):
        return
    if not hmac.compare_digest(given_key(request, body_key).encode(), expected.encode()):
        raise BadRequest(401, KEY_HELP)


def require_key(request: Request) -> None:
    """Dependency for routes whose key can only come in the query or a header."""
    check_key(request)


def has_key_outside_body(request: Request) -> bool:
    return (
        bool(request.query_params.get("api_key")) or request.headers.get("authorization", "")[:7].lower() == "bearer "
    )


def ticket(request: Request) -> Ticket:
    return request.state.ticket  # type: ignore[no-any-return]


async def read_body(request: Request) -> bytes:
    """The whole body, refused as soon as it passes ``--max-body-mb`` (413), takes longer than the body
    timeout (408), or would pass the server's bytes in flight (503)."""
    cfg, held = get_state(request).cfg, ticket(request)
    limit = cfg.max_body_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BadRequest(413, f"request body of {int(length)} bytes is above the {limit} byte limit")
    chunks, n = [], 0
    try:
        async with asyncio.timeout(cfg.body_timeout_s):
            async for chunk in request.stream():
                n += len(chunk)
                if n > limit:
                    raise BadRequest(413, f"request body is above the {limit} byte limit")
                held.take(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(408, f"the request body did not arrive within {cfg.body_timeout_s:g} s") from None
    except ClientDisconnect:
        raise BadRequest(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)
