"""One benchmark: warm-up (cold first request apart), then the scenarios, with provenance."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from speedmap import __version__
from speedmap.bench.clients import ClientPool, client_warnings, run_async, run_here
from speedmap.bench.loadgen import RunResult, error_kind
from speedmap.errors import SpeedmapError


@dataclass
class BenchConfig:
    scenario: str | None = None  # None: single, then a concurrency sweep
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 100])
    rate: float | None = None
    arrivals: str = "poisson"
    duration: float = 10.0
    requests: int = 100
    warmup: int = 10
    clients: int = 1  # client processes (HTTP targets)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(target: Any, model_info: dict[str, Any] | None, images: list[bytes], cfg: BenchConfig) -> dict:
    import numpy
    import onnxruntime

    from speedmap.runtime import available_cpus

    digest = hashlib.sha256()
    for b in images:
        digest.update(hashlib.sha256(b).digest())
    return {
        "speedmap": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__, "platform": platform.platform(), "cpu": cpu_model(),
        "cpus": os.cpu_count(), "usable_cpus": available_cpus(), "target": target.name, "model": model_info,
        "images": len(images), "image_set_sha256": digest.hexdigest()[:16], "config": asdict(cfg),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


async def warm_up(target: Any, n: int) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        await target.send(0)
    except Exception as exc:  # nothing to measure: say why, once
        detail = getattr(exc, "text", None) or str(exc)
        detail = detail[:300]
        raise SpeedmapError(f"the first request to {target.name} failed ({error_kind(exc)}): {detail}") from None
    cold = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(1, n):
        await target.send(i)
    return {"cold_first_request_ms": cold * 1e3, "requests": max(n, 1), "seconds": time.perf_counter() - t + cold}


def plan(cfg: BenchConfig) -> list[tuple[str, float]]:
    """The runs a config asks for, in order."""
    out: list[tuple[str, float]] = []
    if cfg.scenario in (None, "single"):
        out.append(("single", 1))
    if cfg.scenario in (None, "concurrency"):
        out += [("concurrency", c) for c in cfg.concurrency if not (cfg.scenario is None and c == 1)]
    if cfg.scenario == "rate":
        if not cfg.rate or cfg.rate <= 0:
            raise SpeedmapError("--scenario rate needs --rate R (requests per second, above 0)")
        out.append(("rate", cfg.rate))
    if cfg.scenario == "offline":
        out.append(("offline", max(cfg.concurrency)))
    return out


class Runner:
    """Runs scenarios on a target, in this process or on a pool of client processes."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.window = max(0.25, min(1.0, cfg.duration / 5))  # at least five windows for the stability verdict
        self.pool: ClientPool | None = None

    async def run(self, target: Any, kind: str, value: float) -> RunResult:
        cfg = self.cfg
        if cfg.clients > 1 and target.spec is not None:
            if self.pool is None:
                self.pool = await asyncio.to_thread(ClientPool, cfg.clients)
            pool = self.pool
            res = await asyncio.to_thread(pool.run, target.spec, kind, value, cfg.duration, cfg.requests,
                                          cfg.arrivals, self.window)  # fmt: skip
        else:
            res = await run_here(target, kind, value, cfg.duration, cfg.requests, cfg.arrivals, self.window)
        res.warnings = client_warnings(res, remote=target.spec is not None)
        return res

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


async def run_scenarios(target: Any, cfg: BenchConfig,
                        progress: Any = None) -> tuple[dict[str, Any], list[RunResult]]:  # fmt: skip
    warm = await warm_up(target, cfg.warmup)
    runner = Runner(cfg)
    runs = []
    try:
        for kind, value in plan(cfg):
            if progress is not None:
                progress(kind, value)
            runs.append(await runner.run(target, kind, value))
    finally:
        runner.close()
    return warm, runs


def benchmark(target: Any, cfg: BenchConfig, model_info: dict[str, Any] | None, images: list[bytes],
              progress: Any = None) -> tuple[dict[str, Any], list[RunResult]]:  # fmt: skip
    """The JSON document of one benchmark, and its runs (with their histograms, for plots)."""

    async def main() -> tuple[dict[str, Any], list[RunResult]]:
        try:
            return await run_scenarios(target, cfg, progress)
        finally:
            await target.close()

    prov = provenance(target, model_info, images, cfg)
    warm, runs = run_async(main())
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    model = (model_info or {}).get("model_id")
    doc = {"target": target.name, "model": model, "provenance": prov, "warmup": warm,
           "runs": [r.to_json() for r in runs]}  # fmt: skip
    return doc, runs
