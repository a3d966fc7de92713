"""speedmap's HTTP benchmark client against `hey` (Debian's Go load generator): same server, image,
concurrency and route (legacy POST), one after the other in one run; throughput and p50 should agree
within 10%.

    python benchmarks/bench_client_vs_hey.py --models runs/bench-engine/models --model bench/fast \\
        --images runs/bench-accuracy/data/clutter/test --concurrency 8 --seconds 15
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import Server, hey

from speedmap.bench.run import BenchConfig, benchmark
from speedmap.bench.targets import HttpTarget


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    image = sorted(args.images.glob("*.jpg"))[0].read_bytes()
    body = Path(tempfile.mkdtemp()) / "body.txt"
    body.write_bytes(base64.b64encode(image))
    srv = Server(args.models)
    try:
        url = f"{srv.url}/{args.model}"
        hey(url, body, 200, 4)  # warm-up
        rows = {}
        for rnd in range(2):  # interleaved: hey, ours, hey, ours
            h = hey(url, body, int(70 * args.seconds), args.concurrency)
            cfg = BenchConfig("concurrency", [args.concurrency], duration=args.seconds, requests=100, warmup=5)
            doc, _ = benchmark(HttpTarget(srv.url, args.model, [image], legacy=True), cfg, None, [image])
            run = doc["runs"][0]
            rows[f"hey {rnd + 1}"] = (h["rps"], h["p50_ms"], h["errors"])
            rows[f"speedmap {rnd + 1}"] = (run["throughput_rps"], run["latency_ms"]["p50"], sum(run["errors"].values()))
        for k, (rps, p50, errs) in rows.items():
            print(f"{k:<12} {rps:7.1f} req/s  p50 {p50:7.2f} ms  errors {errs}")
        hr = sorted(v[0] for k, v in rows.items() if k.startswith("hey"))
        sr = sorted(v[0] for k, v in rows.items() if k.startswith("speedmap"))
        hp = sorted(v[1] for k, v in rows.items() if k.startswith("hey"))
        sp = sorted(v[1] for k, v in rows.items() if k.startswith("speedmap"))
        ratio_rps, ratio_p50 = (sum(sr) / len(sr)) / (sum(hr) / len(hr)), (sum(sp) / len(sp)) / (sum(hp) / len(hp))
        print(f"speedmap/hey: throughput {ratio_rps:.3f}x, p50 {ratio_p50:.3f}x (goal: within 0.9-1.1)")
        print(json.dumps({"rows": rows, "throughput_ratio": ratio_rps, "p50_ratio": ratio_p50}))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
