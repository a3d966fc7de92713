"""Running the load generator: one event loop (uvloop when installed) in this process, or several client
processes for high rates, started together and merged losslessly (HdrHistograms, error counts,
per-window completions). Each run also measures the client's own CPU use."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

from speedmap.bench.loadgen import RunResult, closed_loop, open_loop
from speedmap.bench.recorder import Recorder
from speedmap.bench.results import Target

T = TypeVar("T")
BUSY_CLIENT = 0.80  # a client process above this share of one core may be the bottleneck


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it halves the event loop's cost per request)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def run_here(
    target: Target,
    kind: str,
    value: float,
    duration: float,
    min_requests: int,
    arrivals: str,
    window_s: float,
    rec: Recorder | None = None,
    start_at: float | None = None,
    seed: int = 0,
    offset_s: float = 0.0,
) -> RunResult:
    """One run in this process's event loop (recording into ``rec`` when given; client processes pass a
    common ``start_at`` and their own ``seed`` and ``offset_s``)."""
    if kind == "rate":
        await target.resize(max(16, int(value * 2)))
    else:
        await target.resize(int(value))
    cpu0 = time.process_time()
    if kind == "rate":
        res = await open_loop(
            target.send,
            value,
            duration,
            min_requests,
            arrivals,
            seed=seed,
            window_s=window_s,
            start_at=start_at,
            offset_s=offset_s,
            rec=rec,
        )
    else:
        res = await closed_loop(
            target.send, int(value), duration, min_requests, window_s=window_s, start_at=start_at, rec=rec
        )
    res.client_cpu = [(time.process_time() - cpu0) / res.duration_s] if res.duration_s else [0.0]
    if kind == "offline":
        res.scenario = "offline"
    return res


def _child(
    spec: dict[str, Any],
    kind: str,
    value: float,
    duration: float,
    min_requests: int,
    arrivals: str,
    window_s: float,
    start_at: float,
    seed: int,
    offset_s: float,
) -> dict[str, Any]:
    """One client process's share of a run; returns its recorder in encoded form."""
    from speedmap.bench.targets import HttpTarget

    async def main() -> RunResult:
        target = HttpTarget(**spec)
        try:
            return await run_here(
                target,
                kind,
                value,
                duration,
                min_requests,
                arrivals,
                window_s,
                start_at=start_at,
                seed=seed,
                offset_s=offset_s,
            )
        finally:
            await target.close()

    res = run_async(main())
    return {
        "recorder": res.recorder.encode(),
        "duration_s": res.duration_s,
        "window_rates": res.window_rates,
        "late_sends": res.late_sends,
        "cpu": res.client_cpu[0],
    }


def _ready() -> bool:
    import speedmap.bench.targets  # noqa: F401  (imports paid before the first run starts)

    return True


class ClientPool:
    """``n`` spawned client processes, kept for every run of a benchmark."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.executor: Executor = ProcessPoolExecutor(n, mp_context=get_context("spawn"))
        for f in [self.executor.submit(_ready) for _ in range(n)]:
            f.result()

    def shares(self, kind: str, value: float) -> list[float]:
        """How a run divides: in-flight count split as evenly as it goes, rates split evenly."""
        if kind == "rate":
            return [value / self.n] * self.n
        n = min(self.n, int(value))
        return [int(value) // n + (1 if k < int(value) % n else 0) for k in range(n)]

    def run(
        self,
        spec: dict[str, Any],
        kind: str,
        value: float,
        duration: float,
        min_requests: int,
        arrivals: str,
        window_s: float,
    ) -> RunResult:
        shares = self.shares(kind, value)
        start_at = time.time() + 0.5
        per = math.ceil(min_requests / len(shares))
        offsets = [k / value if kind == "rate" and arrivals == "constant" else 0.0 for k in range(len(shares))]
        futures = [
            self.executor.submit(_child, spec, kind, share, duration, per, arrivals, window_s, start_at, 1000 + k, off)
            for k, (share, off) in enumerate(zip(shares, offsets, strict=True))
        ]
        parts = [f.result() for f in futures]
        rec = Recorder()
        for p in parts:
            rec.merge(p["recorder"])
        n_windows = min(len(p["window_rates"]) for p in parts)
        windows = [sum(p["window_rates"][i] for p in parts) for i in range(n_windows)]
        scenario = "rate" if kind == "rate" else ("single" if value == 1 else kind)
        return RunResult(
            scenario,
            None if kind == "rate" else int(value),
            value if kind == "rate" else None,
            rec,
            max(p["duration_s"] for p in parts),
            windows,
            sum(p["late_sends"] for p in parts),
            [p["cpu"] for p in parts],
        )

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def client_warnings(run: RunResult, remote: bool) -> list[str]:
    """What the client itself may have distorted."""
    out = []
    busiest = max(run.client_cpu, default=0.0)
    if remote and busiest > BUSY_CLIENT:
        out.append(
            f"a client process used {busiest:.0%} of a core: the client, not the server, may be the "
            "bottleneck; add client processes (--clients N)"
        )
    if run.target_rate:
        if run.late_sends > 0.01 * max(1, run.requests):
            out.append(
                f"{run.late_sends} of {run.requests} requests were sent more than 10 ms late: the client "
                "could not keep up with the rate (--clients N)"
            )
        achieved = run.recorder.count / run.duration_s if run.duration_s else 0.0
        if achieved < 0.95 * run.target_rate:
            out.append(f"achieved {achieved:.1f} req/s of the {run.target_rate:g} targeted")
    return out
