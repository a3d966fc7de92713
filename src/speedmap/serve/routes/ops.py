"""Open routes for operators: liveness, readiness, server info and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from speedmap import __version__
from speedmap.serve.errors import json_response
from speedmap.serve.state import get_state

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    return json_response({"status": "ok", "models_loaded": list(get_state(request).registry.loaded)})


@router.get("/readiness")
async def readiness(request: Request) -> Response:
    """Ready once started (and, with ``--eager``, once every model is loaded), as Roboflow's route says."""
    ready = bool(getattr(request.app.state, "ready", False))
    return json_response({"status": "ready" if ready else "not ready"}, 200 if ready else 503)


@router.get("/info")
async def info(request: Request) -> Response:
    return json_response({"name": "speedmap", "version": __version__, "uuid": get_state(request).server_id})


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    body, ctype = get_state(request).metrics.render()
    return Response(body, media_type=ctype)
