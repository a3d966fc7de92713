"""The browser page of each model at ``/web/{project}/{version}/``: the page, the onnxruntime-web files,
the graph, and a public ``model.json`` (what the page reads; never the training paths).

The key may come as ``?api_key=`` once: the answer sets an HttpOnly, SameSite=Strict cookie for the page's
own requests, holding a token derived from the key (never the key itself), Secure where browsers accept it
(https, or a loopback host); the redirect from ``/web/p/v`` never echoes the key."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from speedmap.modelstore import META_FILE, find
from speedmap.serve.deps import check_key, cookie_token
from speedmap.serve.errors import BadRequest, json_response
from speedmap.serve.state import get_state

log = logging.getLogger("speedmap.serve")
router = APIRouter(include_in_schema=False)
MAX_PATH = 200
# model.json fields the page (and a curious visitor) may see; the rest (training paths) stays private
PUBLIC_META = (
    "name",
    "version",
    "task",
    "file",
    "classes",
    "input",
    "output",
    "preprocessing",
    "size",
    "params",
    "flops",
    "precision",
    "speedmap",
)


def _cookie_name() -> str:
    from speedmap.web import KEY_COOKIE

    return KEY_COOKIE


def _secure(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _set_key_cookie(request: Request, response: Response) -> None:
    key = get_state(request).cfg.api_key
    if key is not None and request.query_params.get("api_key") and request.cookies.get(_cookie_name()) is None:
        response.set_cookie(
            _cookie_name(), cookie_token(key), path="/web/", httponly=True, samesite="strict", secure=_secure(request)
        )


def _web_file(request: Request, project: str, version: str, path: str) -> Response:
    from speedmap.web import ISOLATION_HEADERS, WebBuildMissing, bundle_path, content_type

    check_key(request, cookie=request.cookies.get(_cookie_name()))
    if len(path) > MAX_PATH:
        raise BadRequest(404, "no such file in the web bundle")
    meta = find(get_state(request).cfg.models_dir, f"{project}/{version}")
    rel = path or "index.html"
    if rel == META_FILE:
        public = {k: meta.doc[k] for k in PUBLIC_META if k in meta.doc}
        response: Response = json_response(public, headers=ISOLATION_HEADERS)
    else:
        try:
            file: Path | None = bundle_path(meta.path, rel)
        except WebBuildMissing as exc:
            log.warning("%s", exc)
            raise BadRequest(503, "the browser page is not built on this server (see the server log)") from None
        if file is None:
            raise BadRequest(404, f"no file {rel[:60]!r} in the web bundle of {meta.id}")
        response = FileResponse(file, media_type=content_type(file), headers=ISOLATION_HEADERS)
    _set_key_cookie(request, response)
    return response


@router.get("/web/{project}/{version}")
async def web_root(request: Request, project: str, version: str) -> Response:
    """Redirect to the folder URL, keeping the query except the key (set as a cookie instead)."""
    check_key(request, cookie=request.cookies.get(_cookie_name()))
    find(get_state(request).cfg.models_dir, f"{project}/{version}")
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "api_key"])
    response = RedirectResponse(f"/web/{project}/{version}/" + (f"?{query}" if query else ""), status_code=307)
    _set_key_cookie(request, response)
    return response


@router.get("/web/{project}/{version}/{path:path}")
async def web_bundle(request: Request, project: str, version: str, path: str) -> Response:
    return await asyncio.to_thread(_web_file, request, project, version, path)
