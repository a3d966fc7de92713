"""The server against the in-process engine, side by side in one run, on localhost:

1. single stream: p50 end-to-end HTTP latency vs the in-process engine (decode + infer + postprocess)
   for the same image and model (goal: at most 1.25x);
2. 100 requests in flight: throughput vs the in-process offline batched throughput (goal: at least
   0.9x), zero errors;
3. resident memory of the server over 10,000 requests (goal: flat within 10%);
4. cheap wins: uvloop + httptools vs asyncio + h11, and micro-batching on vs off.

Load comes from `hey` (Go; `apt-get install hey`), so the Python client does not steal the server's CPU.

    python benchmarks/bench_serve.py --models runs/bench-engine/models --model bench/fast \\
        --image runs/bench-accuracy/data/clutter/test/clutter_00510.jpg
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import machine_line

from speedmap.engine import Model
from speedmap.imagepixels import jpeg_decoder_name
from speedmap.serve.process import free_port


class Server:
    def __init__(self, models: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "speedmap", "serve", "--models", str(models), "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def hey(url: str, body: Path, n: int, c: int) -> dict[str, float]:
    """Run hey; per-request latencies from its CSV output."""
    out = subprocess.run(
        [
            "hey",
            "-n",
            str(n),
            "-c",
            str(c),
            "-m",
            "POST",
            "-D",
            str(body),
            "-T",
            "application/x-www-form-urlencoded",
            "-o",
            "csv",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    ok = [float(r["response-time"]) * 1e3 for r in rows if r["status-code"] == "200"]
    starts = [float(r["offset"]) for r in rows]
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows) - min(starts)
    return {
        "requests": len(rows),
        "errors": len(rows) - len(ok),
        "p50_ms": statistics.median(ok),
        "p90_ms": statistics.quantiles(ok, n=10)[-1],
        "rps": len(rows) / span,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--single", type=int, default=300)
    ap.add_argument("--load", type=int, default=3000)
    ap.add_argument("--memory", type=int, default=10000)
    args = ap.parse_args()
    if shutil.which("hey") is None:
        sys.exit("this benchmark needs `hey` (apt-get install hey)")
    print(
        machine_line(f"JPEG decoder {jpeg_decoder_name()}", f"model {args.model}", f"image {args.image.name}"),
        flush=True,
    )
    data = args.image.read_bytes()
    tmp = Path(tempfile.mkdtemp())
    body = tmp / "body.txt"
    body.write_bytes(base64.b64encode(data))
    result: dict[str, object] = {}

    # in-process: the same work the server does per image, minus HTTP and base64
    model = Model.load(args.model, models_dir=args.models)

    def once() -> None:
        p = model.prepare(data)
        model.finish(model.forward([p.square])[0], p, conf=0.4, iou=0.3)

    for _ in range(20):
        once()
    times = []
    for _ in range(args.single):
        t = time.perf_counter()
        once()
        times.append((time.perf_counter() - t) * 1e3)
    engine_p50 = statistics.median(times)

    def batched(n: int = 8) -> float:
        t = time.perf_counter()
        total = 0
        while time.perf_counter() - t < 10:
            ps = [model.prepare(data) for _ in range(n)]
            for pred, p in zip(model.forward([p.square for p in ps]), ps, strict=True):
                model.finish(pred, p, conf=0.4, iou=0.3)
            total += n
        return total / (time.perf_counter() - t)

    engine_tput = batched()
    print(
        f"in-process engine: single p50 {engine_p50:.2f} ms; offline batched (8) {engine_tput:.1f} images/s", flush=True
    )
    model.session = None  # type: ignore[assignment]  # free the in-process session before the servers run
    result["engine"] = {"p50_ms": engine_p50, "offline_images_per_s": engine_tput}

    variants = {
        "uvloop+httptools, batch 8": [],
        "asyncio+h11, batch 8": ["--loop", "asyncio", "--http", "h11"],
        "uvloop+httptools, batch 1": ["--max-batch", "1"],
    }
    if os.environ.get("BENCH_VARIANTS"):
        variants = {k: v for k, v in variants.items() if k in os.environ["BENCH_VARIANTS"].split(";")}
    for name, extra in variants.items():
        srv = Server(args.models, *extra)
        url = f"{srv.url}/{args.model}"
        try:
            hey(url, body, 200, 4)  # warm-up
            single = hey(url, body, args.single, 1)
            load = hey(url, body, args.load, 100)
            row = {"single": single, "c100": load}
            print(
                f"{name:<28} single p50 {single['p50_ms']:.2f} ms ({single['p50_ms'] / engine_p50:.2f}x engine)  "
                f"c=100: {load['rps']:.1f} req/s ({load['rps'] / engine_tput:.2f}x engine offline), p50 "
                f"{load['p50_ms']:.0f} ms, errors {load['errors']}",
                flush=True,
            )
            if name.startswith("uvloop+httptools, batch 8"):
                hey(url, body, 1000, 16)  # steady state first: the c=100 queue above inflates the heap
                before = srv.rss_mb()
                mem = hey(url, body, args.memory, 16)
                after = srv.rss_mb()
                row["memory"] = {
                    "rss_before_mb": before,
                    "rss_after_mb": after,
                    "requests": mem["requests"],
                    "errors": mem["errors"],
                }
                print(
                    f"{'':<28} memory over {mem['requests']} requests: RSS {before:.0f} -> {after:.0f} MB "
                    f"({after / before - 1:+.1%}), errors {mem['errors']}",
                    flush=True,
                )
            result[name] = row
        finally:
            srv.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
