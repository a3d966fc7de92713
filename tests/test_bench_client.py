"""The benchmark's HTTP client, the latency breakdown, the multi-process client, client self-monitoring
and ``--compare``, against real servers (the delay server and ``speedmap serve``)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speedmap.bench.clients import ClientPool, client_warnings, run_async
from speedmap.bench.http import HttpClient, HttpStatusError
from speedmap.bench.loadgen import RunResult, closed_loop, error_kind
from speedmap.bench.recorder import Recorder
from speedmap.bench.run import BenchConfig, benchmark
from speedmap.bench.targets import HttpTarget
from speedmap.cli import app
from tests.test_bench_cli import _images
from tests.test_serve import start_server

runner = CliRunner()


def test_http_client_corner_cases(delay_server: str) -> None:
    async def main() -> None:
        client = HttpClient(delay_server, max_connections=4, timeout=0.3)
        # keep-alive: 40 requests, 4 in flight, never more than 4 connections
        await asyncio.gather(*(client.send(client.build("/delay?ms=5", method="GET")) for _ in range(40)))
        assert 1 <= len(client.open) <= 4
        # a server that closes after each response: the client reconnects
        for _ in range(5):
            r = await client.send(client.build("/close", method="GET"))
            assert json.loads(r.body) == {"closing": True}
        # chunked transfer encoding
        r = await client.send(client.build("/chunked", method="GET"))
        assert json.loads(r.body) == {"parts": [1, 2, 3]}
        # a status error carries the status and the body
        with pytest.raises(HttpStatusError) as exc:
            await client.send(client.build("/nowhere", method="GET"))
        assert exc.value.status_code == 404 and error_kind(exc.value) == "http 404"
        # a timeout drops the half-read connection; the next request still works
        with pytest.raises(TimeoutError):
            await client.send(client.build("/delay?ms=1000", method="GET"))
        r = await client.send(client.build("/delay?ms=1", method="GET"))
        assert r.status_code == 200 and r.body == b"ok"
        await client.aclose()
        # nothing listening
        dead = HttpClient("http://127.0.0.1:9", timeout=2)
        with pytest.raises(OSError):
            await dead.send(dead.build("/x", method="GET"))

    asyncio.run(main())


def test_breakdown_from_x_processing_time_and_two_client_processes(delay_server: str) -> None:
    """model_id delay/150 makes the server take 150 ms and say so; two client processes, merged."""
    # (not tried again if UNSTABLE: 4 in flight on 150 ms complete in bursts the windows cannot smooth)
    cfg = BenchConfig("concurrency", [4], duration=1.0, requests=24, warmup=2, clients=2, retry_unstable=False)
    report, runs = benchmark(HttpTarget(delay_server, "delay/150", [b"\xff\xd8 not decoded here"]), cfg, None, [b""])
    (run,) = report.runs
    assert run.client["processes"] == 2 and len(run.client["cpu_per_process"]) == 2
    assert run.errors == {} and run.requests >= 24 and run.tries == 1
    assert runs[0].recorder.count == run.requests  # both processes' histograms merged
    b = run.breakdown_ms
    assert b.keys() == {"client_encode", "network_queue", "server", "client_decode"}
    assert b["server"]["p50"] == pytest.approx(150, rel=0.01)
    # end to end = the server's 150 ms plus loopback and two client processes on a shared 2-core box:
    # never below the server's time, and not more than the queue bound below above it
    assert 150 <= run.p50_ms < 150 + 20  # type: ignore[operator]
    assert b["network_queue"]["p50"] < 15 and b["client_encode"]["p50"] < 5  # type: ignore[operator]
    # 4 in flight on 150 ms: about 26 req/s whichever process sent them
    assert run.throughput_rps == pytest.approx(4 / 0.150, rel=0.15)


def test_client_pool_shares_and_rate_across_processes(delay_server: str) -> None:
    pool = ClientPool(2)
    try:
        assert pool.shares("concurrency", 5) == [3, 2] and pool.shares("concurrency", 1) == [1]
        assert pool.shares("rate", 30) == [15.0, 15.0]
        spec = HttpTarget(delay_server, "delay/20", [b"x"]).spec
        res = pool.run(spec, "rate", 40.0, 1.5, 40, "constant", 0.5)
    finally:
        pool.close()
    assert res.scenario == "rate" and res.recorder.count >= 40 and not res.recorder.errors
    achieved = res.recorder.count / res.duration_s
    assert achieved == pytest.approx(40, rel=0.2)
    assert 20 <= res.recorder.latency_ms()["p50"] < 40  # the 20 ms delay, plus loopback on a busy machine


def test_client_warnings() -> None:
    def result(cpu: list[float], rate: float | None = None, late: int = 0, n: int = 100) -> RunResult:
        rec = Recorder()
        for _ in range(n):
            rec.record(0.01)
        return RunResult("rate" if rate else "concurrency", None if rate else 8, rate, rec, 1.0, [], late, cpu)

    assert client_warnings(result([0.3]), remote=True) == []
    busy = client_warnings(result([0.2, 0.93]), remote=True)
    assert len(busy) == 1 and "93%" in busy[0] and "--clients" in busy[0]
    assert client_warnings(result([0.95]), remote=False) == []  # in-process: the CPU is the engine's
    late = client_warnings(result([0.1], rate=100, late=10), remote=True)
    assert any("late" in w for w in late)
    short = client_warnings(result([0.1], rate=200), remote=True)  # 100 done of 200/s
    assert any("achieved 100.0 req/s of the 200" in w for w in short)


def test_breakdown_against_speedmap_serve_and_in_process(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    proc, url = start_server(model_store)
    try:
        out = tmp_path / "http.json"
        r = runner.invoke(
            app,
            [
                "bench",
                url,
                "--model",
                "shapes/1",
                "--images",
                str(_images(tiny_run)),
                "--scenario",
                "single",
                "--duration",
                "1",
                "--requests",
                "20",
                "--json",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        run = json.loads(out.read_text())["runs"][0]
        b, total = run["breakdown_ms"], run["latency_ms"]["mean"]
        assert set(b) == {"client_encode", "network_queue", "server", "client_decode"}
        parts = sum(v["mean"] for v in b.values())
        assert parts <= total * 1.02 and parts >= total * 0.8, (parts, total)
        assert b["server"]["mean"] > b["network_queue"]["mean"]
        assert "where the time goes" in r.output
    finally:
        proc.terminate()
        proc.wait(10)
    out = tmp_path / "local.json"
    r = runner.invoke(
        app,
        [
            "bench",
            "local",
            "--model",
            "shapes/1",
            "--models",
            str(model_store),
            "--images",
            str(_images(tiny_run)),
            "--scenario",
            "single",
            "--duration",
            "0.5",
            "--requests",
            "10",
            "--warmup",
            "2",
            "--warmup-seconds",
            "0.4",
            "--providers",
            "cpu",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    warm = doc["warmup"]
    assert warm["seconds"] >= 0.4 and warm["requests"] > 2 and warm["model_load_ms"] > 0
    assert doc["provenance"]["model"]["providers"] == ["CPUExecutionProvider"]
    assert "model load" in " ".join(r.output.split())
    b = doc["runs"][0]["breakdown_ms"]
    assert set(b) == {"queue", "decode_preprocess", "inference", "postprocess"}
    assert b["inference"]["p50"] > 0


def test_compare_two_models_interleaved(model_store: Path, tiny_run: Path, tmp_path: Path) -> None:
    store = tmp_path / "models"
    shutil.copytree(model_store / "shapes" / "1", store / "shapes" / "1")
    shutil.copytree(model_store / "shapes" / "1", store / "shapes" / "2")
    out = tmp_path / "cmp" / "cmp.json"
    r = runner.invoke(
        app,
        [
            "bench",
            "local",
            "--model",
            "shapes/1",
            "--compare",
            "shapes/2",
            "--models",
            str(store),
            "--images",
            str(_images(tiny_run)),
            "--scenario",
            "concurrency",
            "--concurrency",
            "1,2",
            "--duration",
            "0.3",
            "--requests",
            "8",
            "--repeats",
            "3",
            "--warmup",
            "2",
            "--no-retry",
            "--json",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["model"] == "shapes/1" and doc["compare"] == "shapes/2"
    order = [(x["model"], x["repeat"]) for x in doc["runs"] if x["concurrency"] == 1]
    assert order == [
        ("shapes/1", 0),
        ("shapes/2", 0),
        ("shapes/2", 1),
        ("shapes/1", 1),
        ("shapes/1", 2),
        ("shapes/2", 2),
    ]
    assert [x["concurrency"] for x in doc["ratios"]] == [1, 2]
    for x in doc["ratios"]:
        lr = x["p50_latency_ratio"]
        assert len(lr["values"]) == 3 and lr["min"] <= lr["median"] <= lr["max"]
        assert 0.3 < lr["median"] < 3  # the same model on both sides
    assert set(doc["warmup"]) == {"shapes/1", "shapes/2"}
    assert all(len(x["attempts"]) == 1 for x in doc["runs"]) and not doc["provenance"]["config"]["retry_unstable"]
    for name in ("compare.png", "latency_cdf_shapes-1.png", "latency_cdf_shapes-2.png", "cmp.csv"):
        assert (out.parent / name).stat().st_size > 100, name
    assert "interleaved repeats" in r.output


def test_run_async_uses_uvloop() -> None:
    async def loop_name() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_async(loop_name()).startswith("uvloop")
    res = run_async(closed_loop(lambda i: asyncio.sleep(0.001), 2, 0.0, 10))
    assert res.recorder.count >= 10
