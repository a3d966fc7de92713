"""Ray Serve: the same app as ``speedmap serve``, in N replicas behind Ray's HTTP proxy.

Each replica builds the speedmap app itself (models, batcher, thread pools stay inside the replica
process) and Ray routes and load-balances requests to it. On a Ray cluster, set ``RAY_ADDRESS`` (or
run on the head node) and replicas spread over the nodes; Ray's autoscaling config applies as usual.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from speedmap.serve.app import ServeConfig

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def build(cfg: ServeConfig, replicas: int, cpus_per_replica: float) -> Any:
    """The Ray Serve application (a bound deployment)."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    @serve.deployment(
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=max(8, cfg.queue_size),
    )
    class Speedmap:
        def __init__(self, config_json: str) -> None:
            import httpx
            import orjson

            from speedmap.serve.app import create_app

            self.app = create_app(ServeConfig(**orjson.loads(config_json)))
            self.client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app), base_url="http://replica", timeout=None
            )

        async def __call__(self, request: Request) -> Response:
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
            r = await self.client.request(
                request.method,
                request.url.path,
                params=request.query_params.multi_items(),
                headers=headers,
                content=await request.body(),
            )
            out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_HEADERS}
            return Response(r.content, status_code=r.status_code, headers=out)

    return Speedmap.bind(cfg.to_env())


def run(cfg: ServeConfig, replicas: int, host: str, port: int) -> None:
    """Start (or join, with ``RAY_ADDRESS``) a Ray instance and serve until interrupted."""
    import ray
    from ray import serve

    from speedmap.runtime import available_cpus

    cpus = max(1.0, available_cpus() / replicas) if not os.environ.get("RAY_ADDRESS") else 1.0
    cfg.threads = cfg.threads or max(1, int(cpus))
    # "local": a Ray of its own; left to itself, ray.init() joins a cluster it finds on this machine, and the
    # server's shutdown then tears down that cluster's Serve application and its CPUs' work
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or "local",
        ignore_reinit_error=True,
        log_to_driver=False,
        include_dashboard=False,
    )

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a terminated server must not leave a local Ray instance behind
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build(cfg, replicas, cpus), name="speedmap", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
