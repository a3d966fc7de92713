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
from speedmap.bench.loadgen import RunResult, closed_loop, error_kind, open_loop
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


async def _warmup(target: Any, n: int) -> dict[str, Any]:
    t = time.perf_counter()
    try:
        await target.send(0)
    except Exception as exc:  # nothing to measure: say why, once
        resp = getattr(exc, "response", None)
        detail = resp.text[:300] if resp is not None else str(exc)
        raise SpeedmapError(f"the first request to {target.name} failed ({error_kind(exc)}): {detail}") from None
    cold = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(1, n):
        await target.send(i)
    return {"cold_first_request_ms": cold * 1e3, "requests": max(n, 1), "seconds": time.perf_counter() - t + cold}


async def run_scenarios(target: Any, cfg: BenchConfig,
                        progress: Any = None) -> tuple[dict[str, Any], list[RunResult]]:  # fmt: skip
    warm = await _warmup(target, cfg.warmup)
    plan: list[tuple[str, int | float]] = []
    if cfg.scenario in (None, "single"):
        plan.append(("single", 1))
    if cfg.scenario in (None, "concurrency"):
        plan += [("concurrency", c) for c in cfg.concurrency if not (cfg.scenario is None and c == 1)]
    if cfg.scenario == "rate":
        if not cfg.rate:
            raise ValueError("--scenario rate needs --rate R")
        plan.append(("rate", cfg.rate))
    if cfg.scenario == "offline":
        plan.append(("offline", max(cfg.concurrency)))
    runs = []
    window = max(0.25, min(1.0, cfg.duration / 5))  # at least five windows for the stability verdict
    for kind, value in plan:
        if progress is not None:
            progress(kind, value)
        if kind == "rate":
            await target.resize(max(16, int(value * 2)))
            res = await open_loop(target.send, float(value), cfg.duration, cfg.requests, cfg.arrivals,
                                  window_s=window)  # fmt: skip
        else:
            await target.resize(int(value))
            res = await closed_loop(target.send, int(value), cfg.duration, cfg.requests, window_s=window)
            if kind == "offline":
                res.scenario = "offline"
        runs.append(res)
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
    warm, runs = asyncio.run(main())
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    model = (model_info or {}).get("model_id")
    doc = {"target": target.name, "model": model, "provenance": prov, "warmup": warm,
           "runs": [r.to_json() for r in runs]}  # fmt: skip
    return doc, runs
