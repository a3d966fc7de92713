"""Soak: 100 requests in flight for 10 minutes against the ``fast`` model, with the project's own load
generator (``speedmap.bench.loadgen.closed_loop`` driving ``HttpTarget``: keep-alive httptools client,
JPEG images of the model's input size, base64 POSTs on the legacy route or the v1 route).

Per minute: requests, errors, throughput, p50/p99 latency and the server's resident memory (VmRSS at the
minute's end). Verdicts: zero errors, and the last minute's RSS within 10% of the second's (the first
minute warms up). Prints a markdown table for BENCHMARKS.md; exits 1 when a verdict fails.

    python benchmarks/bench_soak.py                              # makes a fast model under runs/bench-fuzz
    python benchmarks/bench_soak.py --models runs/study-full/models --model shapes/fast
    python benchmarks/bench_soak.py --minutes 0.2                # smoke test (windows of a quarter of the run)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fuzz import ensure_model  # noqa: E402

from speedmap.bench.loadgen import closed_loop, error_kind  # noqa: E402
from speedmap.bench.targets import HttpTarget  # noqa: E402
from speedmap.modelstore import read_meta  # noqa: E402
from speedmap.serve.process import ServerProcess  # noqa: E402


def jpegs(size: int, n: int = 16, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs of ``size`` x ``size`` with a few filled shapes on a noisy background."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for i in range(n):
        arr = np.random.default_rng(seed + i).integers(80, 170, (size, size, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
        draw = ImageDraw.Draw(im)
        for _ in range(rng.randint(1, 4)):
            x, y, r = rng.randrange(size), rng.randrange(size), rng.randint(size // 16 + 1, size // 4 + 2)
            color = tuple(rng.randrange(256) for _ in range(3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=color)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class Windows:
    """Completions, errors and latencies per window of ``width`` seconds from ``start``. Requests that
    complete after the last window (those in flight when the load stopped) are left out of the figures,
    but an error among them counts in the last window."""

    def __init__(self, start: float, width: float, count: int) -> None:
        self.start, self.width = start, width
        self.latencies: list[list[float]] = [[] for _ in range(count)]
        self.errors: list[dict[str, int]] = [{} for _ in range(count)]
        self.rss: list[float] = [float("nan")] * count

    def index(self, now: float) -> int:
        return min(len(self.latencies) - 1, int((now - self.start) / self.width))

    def ok(self, now: float, seconds: float) -> None:
        if now - self.start < self.width * len(self.latencies):  # not the drain of the last requests in flight
            self.latencies[self.index(now)].append(seconds)

    def error(self, now: float, kind: str) -> None:
        e = self.errors[self.index(now)]
        e[kind] = e.get(kind, 0) + 1


async def soak(
    url: str,
    model_id: str,
    images: list[bytes],
    concurrency: int,
    seconds: float,
    windows: Windows,
    srv: ServerProcess,
    legacy: bool,
) -> None:
    target = HttpTarget(url, model_id, images, legacy=legacy, concurrency=concurrency, timeout=60.0)

    async def send(i: int) -> dict[str, float]:
        t = time.perf_counter()
        try:
            phases = await target.send(i)
        except Exception as exc:
            windows.error(time.perf_counter(), error_kind(exc))
            raise
        now = time.perf_counter()
        windows.ok(now, now - t)
        return phases

    async def sample_memory() -> None:
        for k in range(len(windows.rss)):
            await asyncio.sleep(max(0.0, windows.start + (k + 1) * windows.width - time.perf_counter() - 0.05))
            if srv.alive():
                windows.rss[k] = srv.memory_mb()["VmRSS"]

    sampler = asyncio.create_task(sample_memory())
    try:
        await closed_loop(send, concurrency, seconds, 0)
    finally:
        sampler.cancel()
        await target.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="model store (default: make a fast model under --work)")
    ap.add_argument("--model", default="shapes/1")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-fuzz")
    ap.add_argument("--imgsz", type=int, default=128, help="input size of the model made without --models")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--v1", action="store_true", help="POST /infer/object_detection instead of the legacy route")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load before the measured run")
    ap.add_argument("--server-args", default="", help="more `speedmap serve` flags (quoted)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    if args.models:
        store, model_id = args.models, args.model
    else:
        store, model_id, _ = ensure_model(args.work, "fast", args.imgsz, epochs=3)
    meta = read_meta(store / model_id)
    images = jpegs(meta.imgsz)
    seconds = args.minutes * 60
    width = 60.0 if args.minutes >= 2 else seconds / 4
    count = max(1, round(seconds / width))
    print(
        f"soak: {args.concurrency} in flight for {seconds:.0f} s against {model_id} ({meta.doc.get('size', '?')}, "
        f"{meta.imgsz} px) from {store}; windows of {width:.0f} s",
        flush=True,
    )
    srv = ServerProcess(store, *shlex.split(args.server_args))
    srv.start()
    try:
        start_rss = srv.memory_mb()["VmRSS"]
        if args.warmup:
            warm = Windows(time.perf_counter(), args.warmup, 1)
            asyncio.run(soak(srv.url, model_id, images, args.concurrency, args.warmup, warm, srv, not args.v1))
        windows = Windows(time.perf_counter(), width, count)
        asyncio.run(soak(srv.url, model_id, images, args.concurrency, seconds, windows, srv, not args.v1))
        end = srv.memory_mb()
        alive = srv.alive()
    finally:
        srv.stop()

    rows = []
    for k in range(count):
        lat = np.array(windows.latencies[k]) * 1e3
        errors = sum(windows.errors[k].values())
        pct = {f"p{q}_ms": float(np.percentile(lat, q)) if len(lat) else None for q in (50, 99)}
        rows.append(
            {
                "window": k + 1,
                "requests": len(lat) + errors,
                "errors": errors,
                "error_kinds": windows.errors[k],
                "throughput_rps": len(lat) / width,
                **pct,
                "rss_mb": windows.rss[k],
            }
        )
    errors = sum(r["errors"] for r in rows)
    second, last = (rows[1]["rss_mb"], rows[-1]["rss_mb"]) if count >= 2 else (rows[0]["rss_mb"], rows[-1]["rss_mb"])
    growth = last / second - 1 if second == second and second else float("nan")
    flat = abs(growth) <= 0.10
    unit = "minute" if width == 60 else f"{width:.0f} s window"
    print(f"\n| {unit} | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | server RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        p50 = f"{r['p50_ms']:.0f}" if r["p50_ms"] is not None else "-"
        p99 = f"{r['p99_ms']:.0f}" if r["p99_ms"] is not None else "-"
        print(
            f"| {r['window']} | {r['requests']} | {r['errors']} | {r['throughput_rps']:.1f} | {p50} | {p99} | "
            f"{r['rss_mb']:.0f} |"
        )
    print(
        f"\nserver RSS: {start_rss:.0f} MB idle at start, {end['VmRSS']:.0f} MB at the end, peak {end['VmHWM']:.0f} MB"
    )
    print(f"errors: {errors} (want 0){'; kinds ' + str(_merge(r['error_kinds'] for r in rows)) if errors else ''}")
    print(f"last {unit} RSS vs the second: {growth:+.1%} -> {'within' if flat else 'NOT within'} 10%")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "errors": errors,
                    "rss_growth": growth,
                    "width_s": width,
                    "rss_start_mb": start_rss,
                    "rss_end": end,
                },
                indent=1,
            )
        )
    sys.exit(0 if errors == 0 and flat and alive else 1)


def _merge(dicts: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:  # type: ignore[attr-defined]
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


if __name__ == "__main__":
    main()
