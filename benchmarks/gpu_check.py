"""The prepared GPU check (issue 27), for a machine with an NVIDIA GPU; ``benchmarks/gpu_check.sh`` runs it.

Within about 8 minutes, on a generated task (``crowd``, 256 px), each step a real speedmap command:

1. training speed per size, mixed precision on the GPU against the CPU (2 epochs each, the real trainer), and
   that the GPU run's outputs are CPU-kind: checkpoints, an ONNX export, COCO metrics;
2. engine latency on the CUDA provider against the CPU: batch 1 (``predict``) and micro-batched forwards of 8;
3. the server on the CUDA provider, one request at a time and 100 in flight (``speedmap bench``);
4. the quick study with ``--device cuda``, which adds the GPU destinations (in-process and HTTP).

Writes ``OUT/gpu_check.json`` and prints a short summary. A step that fails is recorded with its error and the
check goes on. ``--cpu-only`` runs the same script without a GPU (the CPU columns only), to test it here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = ("fast", "accurate")
IMGSZ = 256


def sh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a speedmap command; raise with its last output lines when it fails."""
    proc = subprocess.run([sys.executable, "-m", "speedmap", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"speedmap {args[0]} exited {proc.returncode}: {(proc.stdout + proc.stderr)[-800:]}")
    return proc


def step(doc: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    t0 = time.perf_counter()
    try:
        doc[name] = fn()
    except Exception as exc:  # a failed step is a result; the check goes on
        doc[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    doc.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
    print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)


def training(out: Path, data: Path, devices: list[str]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for size in SIZES:
        for dev in devices:
            run = out / "runs" / f"{size}-{dev}"
            sh(
                "train",
                str(data),
                "--size",
                size,
                "--epochs",
                "2",
                "--imgsz",
                str(IMGSZ),
                "--device",
                dev,
                "--out",
                str(run),
                "--patience",
                "0",
            )
            rec = json.loads((run / "train.json").read_text())
            model = out / "models" / "crowd" / f"{size}-{dev}"
            sh("export", str(run), "--out", str(model))
            metrics = json.loads(sh("eval", "--model", str(model), "--data", str(data), "--json").stdout)
            res[f"{size}/{dev}"] = {
                "device": rec["device"],
                "train_images_per_second": rec["train_images_per_second"],
                "files": sorted(p.name for p in run.iterdir() if p.suffix in (".pt", ".json", ".csv")),
                "test_map50": metrics.get("map50"),
            }
        if len(devices) == 2:
            g, c = (res[f"{size}/{d}"]["train_images_per_second"] for d in devices)
            res[f"{size}/speedup"] = round(g / c, 2)
    return res


def engine_latency(out: Path, data: Path, providers: list[str], n: int = 60) -> dict[str, Any]:
    import numpy as np

    from speedmap.engine import Model

    images = sorted((data / "test").glob("*.jpg"))[:16]
    blobs = [p.read_bytes() for p in images]
    res: dict[str, Any] = {}
    for size in SIZES:
        folder = out / "models" / "crowd" / f"{size}-{'cuda' if 'cuda' in providers else 'cpu'}"
        for prov in providers:
            model = Model.load(str(folder), providers=prov)
            for b in blobs[:5]:
                model.predict(b)
            one = []
            for i in range(n):
                t0 = time.perf_counter()
                model.predict(blobs[i % len(blobs)])
                one.append((time.perf_counter() - t0) * 1000)
            squares = [model.prepare(b).square for b in blobs[:8]]
            model.forward(squares)
            batch = []
            for _ in range(max(n // 8, 5)):
                t0 = time.perf_counter()
                model.forward(squares)
                batch.append((time.perf_counter() - t0) * 1000 / len(squares))
            res[f"{size}/{prov}"] = {
                "providers": model.providers,
                "batch1_p50_ms": round(statistics.median(one), 2),
                "batch8_ms_per_image": round(statistics.median(batch), 2),
                "batch1_p90_ms": round(float(np.percentile(one, 90)), 2),
            }
    return res


def server(out: Path, providers: str) -> dict[str, Any]:
    from speedmap.serve.process import ServerProcess

    res: dict[str, Any] = {}
    images = out / "crowd" / "test"
    store = out / "models"
    with_provider = ("--providers", providers)
    proc = ServerProcess(store, *with_provider)
    proc.start()
    try:
        for size in SIZES:
            doc = out / f"bench-{size}.json"
            sh(
                "bench",
                proc.url,
                "--model",
                f"crowd/{size}-{'cuda' if providers == 'cuda' else 'cpu'}",
                "--images",
                str(images),
                "--scenario",
                "concurrency",
                "--concurrency",
                "1,100",
                "--duration",
                "10",
                "--json",
                str(doc),
                timeout=240,
            )
            runs = json.loads(doc.read_text())["runs"]
            res[size] = {
                f"c{r['concurrency']}": {"rps": round(r["throughput_rps"], 1), "p50_ms": r["latency_ms"]["p50"]}
                for r in runs
            }
    finally:
        proc.stop()
    return res


def quick_study(out: Path, device: str) -> dict[str, Any]:
    study = out / "study"
    t0 = time.perf_counter()
    sh("compare", "--quick", "--device", device, "--targets", "local,http", "--out", str(study), timeout=330)
    results = json.loads((study / "results.json").read_text())
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "destinations": results.get("destinations"),
        "verdict": [(c["task"], c["destination"], c["size"]) for c in results["recommendation"]["choices"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    ap.add_argument("--cpu-only", action="store_true", help="no GPU: run the CPU columns only (to test the script)")
    ap.add_argument("--steps", default="training,engine,server,quick_study", help="the steps to run, in order")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    import onnxruntime
    import torch

    gpu = not args.cpu_only
    doc: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None,
        "onnxruntime": onnxruntime.__version__,
        "ort_providers": onnxruntime.get_available_providers(),
    }
    if gpu and not torch.cuda.is_available():
        sys.exit("gpu_check: PyTorch sees no CUDA device (use --cpu-only to test the script on a CPU)")
    data = out / "crowd"
    if not (data / "task.json").exists():
        sh("datasets", "make", "crowd", str(data), "--images", "200", "--imgsz", str(IMGSZ), "--seed", "0")
    devices = ["cuda", "cpu"] if gpu else ["cpu"]
    steps: dict[str, Callable[[], Any]] = {
        "training": lambda: training(out, data, devices),
        "engine": lambda: engine_latency(out, data, ["cuda", "cpu"] if gpu else ["cpu"]),
        "server": lambda: server(out, "cuda" if gpu else "cpu"),
        "quick_study": lambda: quick_study(out, "cuda" if gpu else "cpu"),
    }
    for name in args.steps.split(","):
        step(doc, name, steps[name])
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "seconds"}, indent=1)[:6000])
    print(f"wrote {out / 'gpu_check.json'}; steps took {doc['seconds']} s")


if __name__ == "__main__":
    main()
