"""The HTTP API: Roboflow's hosted (legacy) routes and the inference server's v1 routes, on FastAPI.

``create_app`` only assembles: the state (:mod:`.state`), the error table (:mod:`.errors`), the middleware
(:mod:`.middleware`) and one router per route family (:mod:`.routes`), the legacy catch-all last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from speedmap import __version__
from speedmap.serve import errors
from speedmap.serve.config import ServeConfig
from speedmap.serve.middleware import GuardMiddleware, MetricsMiddleware
from speedmap.serve.routes import legacy, ops, v1, web
from speedmap.serve.state import ServerState

__all__ = ["ServeConfig", "app_from_env", "create_app"]


def _return_freed_memory() -> None:
    """glibc raises its mmap threshold after large frees, after which decoded images land on the heap and
    their memory stays with the process; a fixed threshold keeps every large array in its own mapping,
    handed back to the system when the request ends."""
    import ctypes
    import ctypes.util
    import sys

    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: 1 MiB, and no longer adjusted
    except (OSError, AttributeError):
        pass


def create_app(cfg: ServeConfig | None = None) -> FastAPI:
    _return_freed_memory()
    state = ServerState.create(cfg or ServeConfig())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.cfg.eager:
            for model_id in state.registry.available():
                await state.registry.get(model_id)
        app.state.ready = True
        yield
        app.state.ready = False
        await state.registry.close()
        state.decode_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="speedmap", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.speedmap, app.state.ready = state, False
    errors.install(app)
    for router in (ops.router, v1.router, web.router, legacy.router):  # the legacy catch-all last
        app.include_router(router)
    app.add_middleware(GuardMiddleware, timeout_s=state.cfg.timeout_s, budget=state.budget)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)  # outermost: it sees the guard's answers
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes: the config comes in ``SPEEDMAP_SERVE_CONFIG``."""
    return create_app(ServeConfig.from_env())
