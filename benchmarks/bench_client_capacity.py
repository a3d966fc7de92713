"""Client capacity: how many requests/s speedmap's HTTP benchmark client drives from ONE core against a
trivial endpoint (goal: at least 2,000), beside wrk on the same core and endpoint (what the endpoint can
take) and the previous httpx-based client. The server runs pinned to the other core.

    python benchmarks/bench_client_capacity.py --seconds 10 --concurrency 32
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from speedmap.bench.clients import run_async, run_here
from speedmap.bench.targets import HttpTarget
from speedmap.serve.process import free_port

HERE = Path(__file__).parent


class HttpxTarget:
    """The first cut's client, kept here only to measure what the lean client saves."""

    name, spec = "httpx", None

    def __init__(self, url: str, image: bytes) -> None:
        self.url, self.b64 = url, base64.b64encode(image).decode()
        self.client = httpx.AsyncClient()

    async def resize(self, concurrency: int) -> None:
        await self.client.aclose()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.client = httpx.AsyncClient(limits=limits)

    async def send(self, i: int) -> None:
        doc = {"model_id": "bench/trivial", "image": {"type": "base64", "value": self.b64}}
        r = await self.client.post(f"{self.url}/infer/object_detection", json=doc)
        r.raise_for_status()
        r.json()

    async def close(self) -> None:
        await self.client.aclose()


def ours(target: object, seconds: float, concurrency: int) -> tuple[float, float, float]:
    async def main() -> tuple[float, float, float]:
        res = await run_here(target, "concurrency", concurrency, seconds, 100, "poisson", 1.0)
        await target.close()  # type: ignore[attr-defined]
        return res.recorder.count / res.duration_s, res.recorder.latency_ms()["p50"] or 0.0, res.client_cpu[0]

    return run_async(main())


def wrk(url: str, seconds: float, concurrency: int, core: int, body: Path) -> float:
    script = body.with_suffix(".lua")
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body.read_text()}]]\n'
    )
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(core),
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds:g}s",
            "-s",
            str(script),
            f"{url}/infer/object_detection",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("needs two cores: one for the server, one for the client")
    client_core, server_core = cores[0], cores[1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = subprocess.Popen(
        ["taskset", "-c", str(server_core), sys.executable, str(HERE / "trivial_server.py"), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert srv.stdout is not None
    srv.stdout.readline()
    os.sched_setaffinity(0, {client_core})
    image = _small_jpeg()
    body = Path(f"/tmp/speedmap-capacity-{os.getpid()}.json")
    import orjson

    b64 = base64.b64encode(image).decode()
    body.write_bytes(orjson.dumps({"model_id": "bench/trivial", "image": {"type": "base64", "value": b64}}))
    print(
        f"client on core {client_core}, server on core {server_core}, image {len(image)} bytes, "
        f"{args.concurrency} in flight, {args.seconds:g} s per run, {args.rounds} interleaved rounds"
    )
    rows: dict[str, list[tuple[float, float, float]]] = {"speedmap": [], "httpx (first cut)": [], "wrk": []}
    try:
        for _ in range(args.rounds):
            rows["speedmap"].append(ours(HttpTarget(url, "bench/trivial", [image]), args.seconds, args.concurrency))
            rows["httpx (first cut)"].append(ours(HttpxTarget(url, image), args.seconds, args.concurrency))
            if shutil.which("wrk"):
                rows["wrk"].append((wrk(url, args.seconds, args.concurrency, client_core, body), 0.0, 1.0))
            time.sleep(0.5)
    finally:
        srv.terminate()
        body.unlink(missing_ok=True)
        body.with_suffix(".lua").unlink(missing_ok=True)
    import statistics

    for name, rs in rows.items():
        if rs:
            med = statistics.median(r[0] for r in rs)
            runs = ", ".join(f"{r[0]:.0f}" for r in rs)
            cpu = statistics.median(r[2] for r in rs)
            print(f"{name:<18} median {med:8.0f} req/s  (runs: {runs})  client CPU {cpu:.0%} of one core")
    med = statistics.median(r[0] for r in rows["speedmap"])
    print(f"speedmap client from one core: {med:.0f} req/s (goal >= 2000): {'PASS' if med >= 2000 else 'FAIL'}")
    if rows["httpx (first cut)"]:
        print(f"speedmap / httpx: {med / statistics.median(r[0] for r in rows['httpx (first cut)']):.1f}x")


def _small_jpeg() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


if __name__ == "__main__":
    main()
