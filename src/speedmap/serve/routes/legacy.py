"""Roboflow's hosted API, ``POST|GET /{project}/{version}``: a catch-all, so registered last.

``format``: ``json`` (default), ``image`` (the JPEG with boxes drawn) or ``image_and_json`` (the JSON with
the JPEG in ``visualization``, base64). As on Roboflow, drawings have no labels and a 1 px stroke unless
``labels``/``stroke`` ask otherwise."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from speedmap.serve.deps import read_body, require_key, ticket
from speedmap.serve.errors import BadRequest, json_response
from speedmap.serve.inference import Job, infer_one, render, response_doc
from speedmap.serve.requests import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_OVERLAP,
    MAX_DETECTIONS,
    MAX_STROKE,
    Params,
    b64_image,
    bounded_int,
    class_list,
    confidence,
    flag,
    legacy_body,
    threshold,
)
from speedmap.serve.state import get_state

router = APIRouter(tags=["legacy"])
FORMATS = ("json", "image", "image_and_json")
MAX_URL = 2048


async def _multipart_file(request: Request, body: bytes) -> bytes:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=16)
    except Exception:
        raise BadRequest(400, "malformed multipart body") from None
    part = form.get("file") or next((v for v in form.values() if hasattr(v, "read")), None)
    if part is None:
        raise BadRequest(400, "multipart body has no 'file' part")
    if isinstance(part, str):
        return b64_image(part, "file field")
    return await part.read()


async def _image(request: Request) -> bytes | str:
    q = request.query_params
    if q.get("image"):
        if len(q["image"]) > MAX_URL:
            raise BadRequest(400, f"the image URL is longer than {MAX_URL} characters")
        return q["image"]
    if request.method == "GET":
        raise BadRequest(400, "GET needs an image=URL query parameter; POST the image as base64 instead")
    ctype = request.headers.get("content-type", "")
    body = await read_body(request)
    if ctype.lower().startswith("multipart/form-data"):
        return await _multipart_file(request, body)
    return legacy_body(body, ctype)


@router.api_route("/{project}/{version}", methods=["POST", "GET"], dependencies=[Depends(require_key)])
async def legacy_infer(request: Request, project: str, version: str) -> Response:
    """Detect objects in one image: the body (base64, raw bytes or multipart ``file``) or ``?image=URL``."""
    started = time.perf_counter()
    state = get_state(request)
    q = request.query_params
    fmt = q.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(400, f"format must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    model_id = f"{project}/{version}"
    loaded = await state.registry.get(model_id)  # an unknown model fails before the body is read
    params = Params(
        confidence=confidence(q.get("confidence"), loaded.model.meta.best_confidence),
        overlap=threshold(q.get("overlap"), "overlap", DEFAULT_OVERLAP),
        max_detections=bounded_int(
            q.get("max_detections"), "max_detections", DEFAULT_MAX_DETECTIONS, 1, MAX_DETECTIONS
        ),
        classes=class_list(q.get("classes")),
    )
    draw = fmt != "json"
    labels = flag(q.get("labels"), "labels", False)
    stroke = bounded_int(q.get("stroke"), "stroke", 1, 1, MAX_STROKE)
    job = Job(state, ticket(request), state.cfg.max_pixels, keep_images=draw)
    prepared, det = await infer_one(job, model_id, await _image(request), params)
    drawn = await render(job, prepared, det, labels, stroke) if draw else None
    headers = {"X-Processing-Time": f"{time.perf_counter() - started:.6f}"}
    if fmt == "image":
        return Response(drawn, media_type="image/jpeg", headers=headers)
    return json_response(response_doc(det, started, drawn), headers=headers)
