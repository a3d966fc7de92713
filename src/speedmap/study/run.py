"""The Fast-vs-Accurate study: for each dataset and size, train, export, score the test split, and
benchmark every destination; then the report. Every step is keyed by a hash of its inputs and config
(``steps.json``), so a finished step is reused and an interrupted study continues where it stopped
(training itself resumes from ``last.pt``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from speedmap import __version__
from speedmap.errors import SpeedmapError
from speedmap.jsonfile import write_json_atomic
from speedmap.study.config import StudyConfig, key

STEPS_FILE, RESULTS_FILE = "steps.json", "results.json"


class UI(Protocol):
    """What the study reports as it goes (the CLI draws it with rich)."""

    def stage(self, text: str) -> None: ...  # a step starts
    def note(self, text: str) -> None: ...  # a line worth keeping
    def training(self, event: dict[str, Any]) -> None: ...  # the trainer's progress events
    def step_done(self) -> None: ...  # one planned step finished (cached or run)


class Steps:
    """``steps.json``: each finished step's key and result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}

        self.started = time.perf_counter()

    def get(self, name: str, k: str) -> Any:
        entry = self.done.get(name)
        self.started = time.perf_counter()  # a step that is not cached runs from here
        return entry["result"] if entry is not None and entry.get("key") == k else None

    def put(self, name: str, k: str, result: Any) -> Any:
        self.done[name] = {"key": k, "result": result, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "seconds": round(time.perf_counter() - self.started, 1)}  # fmt: skip
        write_json_atomic(self.path, self.done)
        return result

    def seconds(self) -> float:
        """Compute time of every finished step (what the study cost, whatever the interruptions)."""
        return float(sum(e.get("seconds", 0.0) for e in self.done.values()))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


class Study:
    def __init__(self, cfg: StudyConfig, out: Path, ui: UI, command: list[str] | None = None) -> None:
        cfg.check()
        self.cfg, self.out, self.ui = cfg, out, ui
        out.mkdir(parents=True, exist_ok=True)
        self.steps = Steps(out / STEPS_FILE)
        self.models_dir = out / "models"
        self.command = command or sys.argv
        self.server: Any = None

    # ---- datasets
    def datasets(self) -> list[tuple[str, Path]]:
        if self.cfg.data:
            return [(slug(Path(d).resolve().name), Path(d)) for d in self.cfg.data]
        from speedmap.data.tasks.make import make_task

        out = []
        for t in self.cfg.tasks:
            self.ui.stage(f"{t}: generating {self.cfg.images} images at {self.cfg.imgsz} px")
            out.append((t, make_task(t, self.out / "data" / t, seed=self.cfg.seed, images=self.cfg.images,
                                     imgsz=self.cfg.imgsz)))  # fmt: skip
        return out

    # ---- training, export, test-split score
    def train(self, name: str, data: Path, fingerprint: str, size: str) -> tuple[str, dict[str, Any]]:
        c = self.cfg
        k = key("train", fingerprint, size, c.epochs, c.imgsz, c.batch, c.seed, __version__)
        step = f"train/{name}/{size}"
        cached = self.steps.get(step, k)
        if cached is not None:
            return k, cached
        from speedmap.train.trainer import TrainConfig, train

        run = self.out / "runs" / f"{name}-{size}-{k}"
        resume = (run / "last.pt").is_file()
        self.ui.stage(f"{name}: {'resuming' if resume else 'training'} {size} ({c.epochs} epochs at {c.imgsz} px)")
        tc = TrainConfig(data=str(data), size=size, epochs=c.epochs, imgsz=c.imgsz, batch=c.batch, out=str(run),
                         seed=c.seed, resume=resume)  # fmt: skip
        record = train(tc, progress=self.ui.training, log=self.ui.note)
        history = _history(run)
        result = {k2: record[k2] for k2 in ("size", "params", "flops", "imgsz", "epochs", "total_seconds",
                                             "epoch_seconds", "train_images_per_second", "best_epoch", "best_map",
                                             "best_map50")}  # fmt: skip
        result.update(run=str(run), history=history, train_images=record["dataset"]["train_images"])
        return k, self.steps.put(step, k, result)

    def export(self, name: str, size: str, train_key: str, run: str) -> tuple[str, dict[str, Any]]:
        k = key("export", train_key, __version__)
        step = f"export/{name}/{size}"
        cached = self.steps.get(step, k)
        if cached is not None and (self.models_dir / name / size / "model.onnx").is_file():
            return k, cached
        from speedmap.export import export_model

        self.ui.stage(f"{name}: exporting {size} to ONNX and scoring the test split through the engine")
        meta = export_model(run, self.models_dir / name / size, log=self.ui.note)
        metrics = meta.doc.get("metrics") or {}
        result = {"model_id": f"{name}/{size}", "metrics": {m: metrics.get(m) for m in ("map", "map50")},
                  "test_split": metrics.get("split"), "test_images": metrics.get("images")}  # fmt: skip
        return k, self.steps.put(step, k, result)

    # ---- benchmarks
    def destinations(self) -> list[str]:
        dests = [d for d in self.cfg.targets if d != "browser"]
        if "browser" in self.cfg.targets:
            from speedmap.bench.browser import chromium_available
            from speedmap.web import WebBuildMissing, vendor_manifest

            try:
                vendor_manifest()
                built = True
            except WebBuildMissing as exc:
                built = False
                self.ui.note(f"browser destination skipped: {exc}")
            if built and chromium_available():
                dests.append("browser")
            elif built:
                self.ui.note("browser destination skipped: Chromium and chromedriver are not installed "
                             "(apt-get install chromium chromium-driver)")  # fmt: skip
        import onnxruntime

        if "local" in self.cfg.targets and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            dests.insert(dests.index("local") + 1, "local-cuda")
        return dests

    def bench(self, name: str, size: str, export_key: str, dest: str, images: list[Path]) -> dict[str, Any]:
        c = self.cfg
        k = key("bench", export_key, dest, c.bench_seconds, c.bench_requests, c.http_concurrency,
                c.local_concurrency, __version__)  # fmt: skip
        step = f"bench/{dest}/{name}/{size}"
        cached = self.steps.get(step, k)
        if cached is not None:
            return cached
        model_id = f"{name}/{size}"
        self.ui.stage(f"{name}: benchmarking {size} on {dest}")
        doc_path = self.out / "bench" / f"{dest}-{name}-{size}.json"
        doc = self._bench_doc(model_id, dest, images)
        doc_path.parent.mkdir(parents=True, exist_ok=True)
        doc_path.write_text(json.dumps(doc, indent=1) + "\n")
        return self.steps.put(step, k, summarize(doc, doc_path.relative_to(self.out)))

    def _bench_doc(self, model_id: str, dest: str, images: list[Path]) -> dict[str, Any]:
        from speedmap.bench.run import BenchConfig, benchmark

        c = self.cfg
        blobs = [p.read_bytes() for p in images]
        if dest == "browser":
            from speedmap.bench.browser import run_browser_benchmark

            doc, _ = run_browser_benchmark(model_id, images, self.models_dir, requests=c.bench_requests,
                                           warmup=5, duration=c.bench_seconds)  # fmt: skip
            return doc
        if dest.startswith("local"):
            from speedmap.bench.targets import LocalTarget
            from speedmap.engine import Model

            providers = "cuda" if dest == "local-cuda" else None
            engine = Model.load(model_id, models_dir=self.models_dir, providers=providers)
            target: Any = LocalTarget(engine, blobs)
            info, levels = engine.info(), [1, c.local_concurrency]
        else:
            from speedmap.bench.targets import HttpTarget

            target = HttpTarget(self._server_url(), model_id, blobs)
            info, levels = {"model_id": model_id, "route": "v1"}, [1, c.http_concurrency]
        cfg = BenchConfig(None, levels, duration=c.bench_seconds, requests=c.bench_requests, warmup=5)
        doc, _ = benchmark(target, cfg, info, blobs)
        return doc

    def _server_url(self) -> str:
        if self.server is None:
            from speedmap.serve.process import ServerProcess

            self.server = ServerProcess(self.models_dir)
            self.server.start()
        return str(self.server.url)

    # ---- the whole loop
    def run(self) -> dict[str, Any]:
        from speedmap.data.io import load_dataset

        started = time.time()
        results: dict[str, Any] = {"tasks": {}}
        try:
            dests = self.destinations()
            for name, path in self.datasets():
                ds = load_dataset(path)
                test = [r.path for r in ds.split("test")] or [r.path for r in ds.split("valid")]
                if not test:
                    raise SpeedmapError(f"{path}: no test or valid split to score and benchmark on")
                entry: dict[str, Any] = {"dataset": str(path), "classes": ds.classes,
                                         "fingerprint": ds.fingerprint(), "sizes": {}}  # fmt: skip
                results["tasks"][name] = entry
                keys = {}
                for size in self.cfg.sizes:
                    tk, tr = self.train(name, path, entry["fingerprint"], size)
                    self.ui.step_done()
                    ek, ex = self.export(name, size, tk, tr["run"])
                    self.ui.step_done()
                    entry["sizes"][size] = {"train": tr, **ex, "speed": {}}
                    keys[size] = ek
                    self._save(results, started)
                for dest in dests:
                    for size in self.cfg.sizes:
                        entry["sizes"][size]["speed"][dest] = self.bench(name, size, keys[size], dest, test[:50])
                        self.ui.step_done()
                        self._save(results, started)
        finally:
            if self.server is not None:
                self.server.stop()
        results["destinations"] = dests
        return self._save(results, started, finished=True)

    def _save(self, results: dict[str, Any], started: float, finished: bool = False) -> dict[str, Any]:
        results["config"] = self.cfg.to_json()
        results["provenance"] = provenance(self.command)
        results["provenance"]["wall_seconds"] = round(time.time() - started, 1)  # this invocation
        results["provenance"]["steps_seconds"] = round(self.steps.seconds(), 1)  # all finished steps
        results["complete"] = finished
        if finished:
            from speedmap.study.recommend import recommend

            results["recommendation"] = recommend(results)
        write_json_atomic(self.out / RESULTS_FILE, results)
        return results


def _history(run: Path) -> list[dict[str, Any]]:
    import csv

    path = run / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else None) for k, v in r.items()})
    return rows


def summarize(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The numbers the report needs from one benchmark document."""
    runs = doc["runs"]
    single = next(r for r in runs if r["scenario"] == "single")
    loaded = next((r for r in runs if r["scenario"] != "single"), None)
    out: dict[str, Any] = {
        "doc": str(path),
        "single": {"p50_ms": single["latency_ms"]["p50"], "p90_ms": single["latency_ms"]["p90"],
                   "fps": single["throughput_rps"], "valid": single["valid"],
                   "errors": sum(single["errors"].values())},
        "warmup": doc.get("warmup"),
    }  # fmt: skip
    if loaded is not None:
        out["loaded"] = {"concurrency": loaded["concurrency"], "throughput_rps": loaded["throughput_rps"],
                         "p50_ms": loaded["latency_ms"]["p50"], "p90_ms": loaded["latency_ms"]["p90"],
                         "valid": loaded["valid"], "errors": sum(loaded["errors"].values())}  # fmt: skip
    prov = doc.get("provenance", {})
    for k in ("browser", "backend", "threads"):
        if k in prov:
            out.setdefault("browser_info", {})[k] = prov[k]
    return out


def provenance(command: list[str]) -> dict[str, Any]:
    import numpy
    import onnxruntime

    from speedmap.bench.run import cpu_model
    from speedmap.runtime import available_cpus

    prov: dict[str, Any] = {
        "speedmap": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "usable_cpus": available_cpus(), "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
        "command": shlex.join(command) if command else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    try:
        import torch

        prov["torch"] = torch.__version__
        prov["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return prov
