"""CPU runtime settings for exported models (issue 17): ONNX Runtime as the engine runs it, with
intra-op spinning off, from a graph optimised offline (saved once, loaded with optimisation off), and
OpenVINO with its precision pinned to f32 (when `openvino` is installed), all timed interleaved.

    python benchmarks/bench_runtime_options.py fast=models/crowd/fast/model.onnx \
        fast-int8=models/crowd/fast-int8/model.onnx [--threads 2] [--rounds 11] [--n 20]

Prints session start-up time, p50 ms per forward pass (batch 1) and, for OpenVINO, the largest absolute
difference of its raw output from ONNX Runtime's (boxes in input pixels, class probabilities).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from speedmap.runtime import session_options

Runner = Callable[[], np.ndarray]


def ort_runner(path: Path, threads: int, variant: str, x: np.ndarray, tmp: Path) -> tuple[Runner, float]:
    opts = session_options(threads)
    if variant == "no spinning":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if variant == "offline-optimised":
        saved = tmp / f"{path.parent.name}-{path.stem}.opt.onnx"
        once = session_options(threads)
        once.optimized_model_filepath = str(saved)
        ort.InferenceSession(str(path), once, providers=["CPUExecutionProvider"])
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        path = saved
    t = time.perf_counter()
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    start = time.perf_counter() - t
    name = s.get_inputs()[0].name
    return (lambda: s.run(None, {name: x})[0]), start


def openvino_runner(path: Path, threads: int, x: np.ndarray) -> tuple[Runner, float] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    t = time.perf_counter()
    model = ov.Core().read_model(str(path))
    if model.inputs[0].partial_shape.is_dynamic:
        model.reshape({model.inputs[0].any_name: list(x.shape)})
    config = {
        "INFERENCE_PRECISION_HINT": "f32",  # bf16 on AVX-512 CPUs otherwise: boxes moved by up to 0.57 px
        "INFERENCE_NUM_THREADS": str(threads),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    req = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    start = time.perf_counter() - t
    return (lambda: np.asarray(req.infer({0: x})[0])), start


def interleaved(runners: dict[str, Runner], rounds: int, n: int) -> dict[str, float]:
    for f in runners.values():
        for _ in range(10):
            f()
    times: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            for _ in range(n):
                runners[k]()
            times[k].append((time.perf_counter() - t) / n * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="name=path/to/model.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--imgsz", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--n", type=int, default=20, help="Forward passes per runner per round.")
    args = ap.parse_args()
    x = np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
    runners: dict[str, Runner] = {}
    starts: dict[str, float] = {}
    diffs: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            name, path = spec.split("=", 1)
            for variant in ("engine settings", "no spinning", "offline-optimised"):
                k = f"{name} ORT {variant}"
                runners[k], starts[k] = ort_runner(Path(path), args.threads, variant, x, Path(tmp))
            ov = openvino_runner(Path(path), args.threads, x)
            if ov is not None:
                k = f"{name} OpenVINO f32"
                runners[k], starts[k] = ov
                diffs[k] = float(np.abs(runners[k]() - runners[f"{name} ORT engine settings"]()).max())
        ms = interleaved(runners, args.rounds, args.n)
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, batch 1, {args.imgsz} px")
    print("| runner | start-up ms | p50 ms | vs engine settings | max abs diff vs ORT |")
    print("|---|---|---|---|---|")
    for k, v in ms.items():
        base = ms[k.split(" ")[0] + " ORT engine settings"]
        diff = f"{diffs[k]:.3g}" if k in diffs else ""
        print(f"| {k} | {starts[k] * 1e3:.0f} | {v:.2f} | {v / base:.2f}x | {diff} |")


if __name__ == "__main__":
    main()
