"""How failures reach a client: one table from domain errors to HTTP statuses, messages scrubbed of
paths, and anything unexpected logged once and answered 500 with a request id only."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from speedmap.errors import SpeedmapError
from speedmap.imageio import ImageReadError
from speedmap.modelstore import ModelFormatError, ModelNotFoundError

log = logging.getLogger("speedmap.serve")

# A file system path under a usual root (/home/x, /tmp/abc/models): never shown to a client. Route paths
# (/infer/object_detection) are not file system paths and stay.
_ROOTS = "home|tmp|root|usr|opt|var|srv|mnt|media|work|etc|proc|sys|dev|run|Users|private|Volumes|nix|snap|data"
_PATH = re.compile(rf"(?<![\w.:/])/(?:{_ROOTS})(?![\w.@+-])(?:/[^\s'\"]*)?")


class BadRequest(SpeedmapError):
    """A request the server refuses, with the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Overloaded(SpeedmapError):
    """The server holds as much work as it may: 503 with Retry-After."""

    def __init__(self, message: str = "server busy: the model's queue is full, retry shortly") -> None:
        super().__init__(message)


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def scrub(text: str) -> str:
    """``text`` with every absolute path replaced, in case a message ever carries one."""
    return _PATH.sub("<path>", text)


def status_of(exc: SpeedmapError) -> tuple[int, dict[str, str]]:
    """The HTTP status (and headers) of a domain error."""
    from speedmap.serve.urls import UrlRefused

    if isinstance(exc, BadRequest):
        return exc.status, exc.headers
    if isinstance(exc, Overloaded):
        return 503, {"Retry-After": "1"}
    if isinstance(exc, UrlRefused):  # 403 refused by policy, 400 malformed or not fetchable
        return exc.status, {}
    table: list[tuple[type[BaseException], int]] = [(ModelNotFoundError, 404), (ModelFormatError, 500)]
    for kind, status in table:
        if isinstance(exc, kind):
            return status, {}
    return 400, {}


def error_response(exc: SpeedmapError) -> Response:
    status, headers = status_of(exc)
    message = exc.message if isinstance(exc, BadRequest) else str(exc)
    return json_response({"message": scrub(message)}, status, headers)


def internal_error(exc: BaseException, scope: dict[str, Any] | None = None) -> Response:
    """A bug: logged once with its traceback and a request id; the client gets the id only."""
    request_id = uuid.uuid4().hex[:12]
    path = scope.get("path", "?") if scope else "?"
    log.error("request %s (%s) failed", request_id, path[:200], exc_info=exc)
    return json_response({"message": f"internal error (request id {request_id})"}, 500)


def install(app: FastAPI) -> None:
    """Register the handlers: domain errors by the table, bad images 400, validation 422."""

    @app.exception_handler(SpeedmapError)
    async def _domain(_: Request, exc: SpeedmapError) -> Response:
        return error_response(exc)

    @app.exception_handler(ImageReadError)
    async def _image(_: Request, exc: ImageReadError) -> Response:
        return json_response({"message": scrub(f"bad image: {exc}")}, 400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        where = [".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg", ""))[:100] for e in exc.errors()]
        return json_response({"message": "invalid request: " + "; ".join(where[:3])}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"message": scrub(str(exc.detail))[:200]}, exc.status_code, exc.headers)
