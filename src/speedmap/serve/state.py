"""What one server process holds: its settings, models, thread pool, byte budget and metrics."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from speedmap.runtime import available_cpus
from speedmap.serve.budget import Budget
from speedmap.serve.config import ServeConfig
from speedmap.serve.metrics import ServerMetrics
from speedmap.serve.registry import Registry
from speedmap.serve.urls import UrlPolicy


@dataclass
class ServerState:
    cfg: ServeConfig
    registry: Registry
    metrics: ServerMetrics
    decode_pool: ThreadPoolExecutor
    budget: Budget
    urls: UrlPolicy | None
    server_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def create(cls, cfg: ServeConfig) -> ServerState:
        cores = available_cpus()
        threads = cfg.threads or max(1, cores // max(1, cfg.workers))
        metrics = ServerMetrics()
        registry = Registry(
            Path(cfg.models_dir),
            cfg.providers,
            threads,
            cfg.max_batch,
            cfg.max_wait_ms,
            cfg.queue_size,
            metrics.batch_size.observe,
        )
        pool = ThreadPoolExecutor(max_workers=cfg.decode_threads or cores, thread_name_prefix="decode")
        urls = None
        if cfg.allow_urls:
            urls = UrlPolicy(
                frozenset(cfg.url_allowlist),
                allow_private=cfg.url_allow_private,
                max_bytes=cfg.url_max_bytes,
                deadline_s=cfg.url_timeout_s,
            )
        metrics.queue_depth.set_function(lambda: sum(lo.batcher.depth for lo in registry.loaded.values()))
        return cls(cfg, registry, metrics, pool, Budget(cfg.max_inflight_bytes), urls)


def get_state(request: Request) -> ServerState:
    return request.app.state.speedmap  # type: ignore[no-any-return]
