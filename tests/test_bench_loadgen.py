"""The load generator and its HTTP client against a real server with known delays: percentiles within
5% of the truth, and a 1 s stall that open-loop (rate) mode shows in p99 while closed-loop mode hides it."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from speedmap.bench.http import HttpClient
from speedmap.bench.loadgen import closed_loop, open_loop
from speedmap.bench.results import BenchRun


def test_percentiles_within_five_percent_of_a_known_delay_distribution(delay_server: str) -> None:
    # ms, the truth; localhost HTTP adds about 2 ms here, small beside these delays
    delays = np.random.default_rng(0).uniform(100, 300, 240)

    async def main() -> BenchRun:
        client = HttpClient(delay_server, max_connections=8)

        async def send(i: int) -> None:
            await client.send(client.build(f"/delay?ms={delays[i % 240]:.3f}", method="GET"))

        res = await closed_loop(send, concurrency=8, min_duration=0, min_requests=240)
        await client.aclose()
        return res.summary()

    out = asyncio.run(main())
    assert out.requests >= 240 and out.errors == {}
    lat = out.latency_ms
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        truth = float(np.percentile(delays, q))
        assert lat[key] == pytest.approx(truth, rel=0.05), (key, lat[key], truth)


def test_a_stall_shows_in_rate_mode_and_hides_in_closed_loop(delay_server: str) -> None:
    async def run(mode: str) -> BenchRun:
        client = HttpClient(delay_server, max_connections=200, timeout=30)

        async def send(i: int) -> None:
            await client.send(client.build("/stall?ms=5" if i == 100 else "/delay?ms=5", method="GET"))

        if mode == "rate":
            res = await open_loop(send, rate=50, min_duration=0, min_requests=400, arrivals="constant")
        else:
            res = await closed_loop(send, concurrency=1, min_duration=0, min_requests=400)
        await client.aclose()
        return res.summary()

    rate, closed = asyncio.run(run("rate")), asyncio.run(run("closed"))
    assert rate.errors == {} and closed.errors == {}
    # closed loop: one request waited 1 s, the others queued behind nothing: p99 stays small
    assert closed.latency_ms["p99"] < 100 and closed.latency_ms["max"] >= 1000  # type: ignore[operator]
    # open loop: every request due during the stall counts the wait from its intended send time
    assert rate.latency_ms["p99"] >= 500, rate.latency_ms  # type: ignore[operator]
    assert rate.latency_ms["p90"] < 1000  # type: ignore[operator]
