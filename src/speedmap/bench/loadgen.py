"""Load generation, after MLPerf LoadGen and perf_analyzer: closed loop (N in flight) and open loop
(Poisson or constant arrivals at a target rate, latency measured from the *intended* send time so a
server stall cannot hide: no coordinated omission).

A target is an async ``send(i)`` that performs request ``i`` and raises on failure; the load generator
only times and counts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from speedmap.bench.recorder import Recorder, stable
from speedmap.bench.results import BenchRun
from speedmap.cpustat import CONTENDED_SHARE

Send = Callable[[int], Awaitable[Any]]


@dataclass
class RunResult:
    """One run with its histograms (for plots and merging); :meth:`summary` gives its figures."""

    scenario: str
    concurrency: int | None
    target_rate: float | None
    recorder: Recorder = field(repr=False)
    duration_s: float
    window_rates: list[float]
    late_sends: int = 0  # open loop: sends more than 10 ms behind schedule (the client could not keep up)
    client_cpu: list[float] = field(default_factory=list)  # per client process: CPU seconds / wall seconds
    warnings: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every try, see BenchRun.attempts
    other_cpu_share: float | None = None  # others' share of the machine's CPU, see BenchRun.other_cpu_share

    @property
    def requests(self) -> int:
        return self.recorder.count + sum(self.recorder.errors.values())

    @property
    def valid(self) -> bool:
        return stable(self.window_rates)

    @property
    def contended(self) -> bool:
        return self.other_cpu_share is not None and self.other_cpu_share > CONTENDED_SHARE

    def summary(self) -> BenchRun:
        """The run's figures, as the JSON document holds them."""
        return BenchRun(
            scenario=self.scenario,
            concurrency=self.concurrency,
            target_rate=self.target_rate,
            requests=self.requests,
            errors=dict(self.recorder.errors),
            duration_s=self.duration_s,
            throughput_rps=self.recorder.count / self.duration_s if self.duration_s else 0.0,
            latency_ms=self.recorder.latency_ms(),
            valid=self.valid,
            window_rps=list(self.window_rates),
            late_sends=self.late_sends,
            breakdown_ms=self.recorder.breakdown_ms(),
            client={"processes": len(self.client_cpu) or 1, "cpu_per_process": [round(c, 3) for c in self.client_cpu]},
            warnings=list(self.warnings),
            attempts=[dict(a) for a in self.attempts],
            other_cpu_share=self.other_cpu_share,
        )


def error_kind(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return f"http {status}" if status is not None else exc.__class__.__name__


class _Windows:
    """Completions per fixed time window, for the stability verdict."""

    def __init__(self, start: float, width: float) -> None:
        self.start, self.width, self.counts = start, width, [0]

    def add(self, now: float) -> None:
        k = int((now - self.start) / self.width)
        while len(self.counts) <= k:
            self.counts.append(0)
        self.counts[k] += 1

    def rates(self, end: float) -> list[float]:
        full = int((end - self.start) / self.width)  # the last, partial window is left out
        return [c / self.width for c in self.counts[:full]]


async def _timed(send: Send, i: int, since: float, rec: Recorder, windows: _Windows) -> None:
    """Send request ``i``; its latency runs from ``since`` (the send, or the intended send time)."""
    try:
        phases = await send(i)
        t1 = time.perf_counter()
        rec.record(t1 - since)
        windows.add(t1)
        if phases:
            for name, seconds in phases.items():
                rec.phase(name, seconds)
    except Exception as exc:
        rec.error(error_kind(exc))


async def _start_at(wall: float | None) -> float:
    """Wait until wall-clock time ``wall`` (client processes start together), then read the clock."""
    if wall is not None:
        await asyncio.sleep(max(0.0, wall - time.time()))
    return time.perf_counter()


async def closed_loop(
    send: Send,
    concurrency: int,
    min_duration: float,
    min_requests: int,
    window_s: float = 1.0,
    start_at: float | None = None,
    rec: Recorder | None = None,
) -> RunResult:
    """``concurrency`` workers, each sending the next request when its previous one returns. ``rec``:
    record into this recorder (so progress can be read while the run goes)."""
    rec, counter = rec if rec is not None else Recorder(), iter(range(1 << 62))
    start = await _start_at(start_at)
    windows = _Windows(start, window_s)
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() - start < min_duration or done < min_requests:
            await _timed(send, next(counter), time.perf_counter(), rec, windows)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    end = time.perf_counter()
    return RunResult(
        "concurrency" if concurrency > 1 else "single", concurrency, None, rec, end - start, windows.rates(end)
    )


async def open_loop(
    send: Send,
    rate: float,
    min_duration: float,
    min_requests: int,
    arrivals: str = "poisson",
    seed: int = 0,
    window_s: float = 1.0,
    start_at: float | None = None,
    offset_s: float = 0.0,
    rec: Recorder | None = None,
) -> RunResult:
    """Requests at ``rate`` per second whatever the server does; each latency runs from its intended
    send time, so queueing behind a stall is counted."""
    if arrivals not in ("poisson", "constant"):
        raise ValueError(f"arrivals must be poisson or constant, not {arrivals!r}")
    rng = random.Random(seed)
    rec = rec if rec is not None else Recorder()
    start = await _start_at(start_at)
    windows = _Windows(start, window_s)
    tasks: set[asyncio.Task[None]] = set()
    late = 0

    i, due = 0, start + offset_s
    while due - start < min_duration or i < min_requests:
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.010:
            late += 1
        task = asyncio.get_running_loop().create_task(_timed(send, i, due, rec, windows))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        due += rng.expovariate(rate) if arrivals == "poisson" else 1.0 / rate
    if tasks:
        await asyncio.gather(*tasks)
    end = time.perf_counter()
    return RunResult("rate", None, rate, rec, end - start, windows.rates(end), late)
