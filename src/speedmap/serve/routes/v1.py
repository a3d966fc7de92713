"""The inference server's v1 routes (what inference-sdk calls): model management and inference.

Key policy: with ``--api-key``, model management needs the key like every other route (``Authorization:
Bearer``, query or JSON body). inference-sdk's ``unload_model``/``unload_all_models`` send the key only
in the header, so against such a server the SDK is configured with ``api_key_transport="header"`` (or
``"both"``); its default ("legacy") sends none there, and an unauthenticated unload would let anyone
make every request reload the model. Without ``--api-key`` everything is open, as on Roboflow's
self-hosted server. Unloading never fails a queued request (it finishes on the old model)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from speedmap.serve.deps import check_key, has_key_outside_body, read_body, require_key, ticket
from speedmap.serve.errors import BadRequest, json_response
from speedmap.serve.inference import Job, infer_one, render, response_doc
from speedmap.serve.requests import json_body, model_id_of, v1_request
from speedmap.serve.state import get_state

router = APIRouter(tags=["v1"])

# Tasks the inference server has and this one does not: a clear 501, not the legacy catch-all's 401.
UNSERVED_TASKS = (
    "classification",
    "instance_segmentation",
    "keypoints_detection",
    "semantic_segmentation",
    "lmm",
    "workflows",
)


async def _management_body(request: Request) -> dict[str, Any]:
    body = await read_body(request)
    doc = json_body(body) if body.strip() else {}
    if not isinstance(doc, dict):
        raise BadRequest(422, "the request body must be a JSON object")
    check_key(request, doc.get("api_key"))
    return doc


def _registry(request: Request) -> Response:
    return json_response({"models": get_state(request).registry.describe()})


@router.get("/model/registry", dependencies=[Depends(require_key)])
async def model_registry(request: Request) -> Response:
    return _registry(request)


@router.post("/model/add")
async def model_add(request: Request) -> Response:
    doc = await _management_body(request)
    await get_state(request).registry.get(model_id_of(doc.get("model_id")))
    return _registry(request)


@router.post("/model/remove")
async def model_remove(request: Request) -> Response:
    doc = await _management_body(request)
    await get_state(request).registry.remove(model_id_of(doc.get("model_id")))
    return _registry(request)


@router.post("/model/clear")
async def model_clear(request: Request) -> Response:
    await _management_body(request)
    await get_state(request).registry.clear()
    return _registry(request)


@router.post("/infer/object_detection")
async def infer_object_detection(request: Request) -> Response:
    """Object detection on one image or a list (at most ``--max-images``)."""
    started = time.perf_counter()
    state = get_state(request)
    if has_key_outside_body(request):
        check_key(request)  # before reading the body
    req = v1_request(await read_body(request), state.cfg.max_images)
    check_key(request, req.api_key)  # before decoding any image
    loaded = await state.registry.get(req.model_id)
    params = req.params(loaded.model.meta.best_confidence)
    visualize = req.visualize
    labels, stroke = (req.labels, req.stroke) if visualize else (True, None)
    job = Job(state, ticket(request), state.cfg.max_pixels, keep_images=visualize)
    images = req.decoded_images()
    results = await asyncio.gather(*(infer_one(job, req.model_id, im, params) for im in images), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    docs = []
    for prepared, det in results:  # type: ignore[misc]
        drawn = await render(job, prepared, det, labels, stroke) if visualize else None
        docs.append(response_doc(det, started, drawn))
    elapsed = time.perf_counter() - started
    return json_response(docs if req.as_list else docs[0], headers={"X-Processing-Time": f"{elapsed:.6f}"})


async def _unserved(request: Request, task: str) -> Response:
    raise BadRequest(
        501, f"{task} is not served: speedmap serves object detection models only (/infer/object_detection)"
    )


for _task in UNSERVED_TASKS:

    async def _route(request: Request, _task: str = _task) -> Response:
        return await _unserved(request, _task.replace("_", " "))

    router.add_api_route(f"/infer/{_task}", _route, methods=["POST", "GET"], include_in_schema=False)
