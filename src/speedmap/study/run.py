"""The Fast-vs-Accurate study: for each dataset, an interleaved training-speed probe, then for each size
train (to convergence within ``--epochs``), export and score the test split with bootstrap intervals,
then benchmark every destination with Fast and Accurate interleaved; then the recommendation, once.

Every step is keyed by a hash of its inputs, its config and the source code it depends on
(``steps.json``), so a finished step is reused, a step whose code changed is redone (and the progress
line says so), and an interrupted study continues where it stopped (training itself resumes from
``last.pt``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from speedmap import __version__
from speedmap.errors import SpeedmapError
from speedmap.jsonfile import write_json_atomic
from speedmap.study.config import Plan, StudyConfig, key, measured_ips, plan
from speedmap.study.results import (
    Accuracy,
    AccuracyDelta,
    Int8Result,
    RunSummary,
    SizeResult,
    Speed,
    SpeedRatio,
    Spread,
    StudyResults,
    TaskResult,
    TrainProbe,
    TrainResult,
    from_plain,
)

STEPS_FILE, RESULTS_FILE = "steps.json", "results.json"
INT8_SUFFIX = "-int8"  # the int8 export of size S is the model NAME/S-int8
HTTP_DESTINATIONS = ("http", "http-cuda")  # benchmarked through a server process
INT8_DESTINATIONS = ("local", "http")  # the CPU destinations int8 is measured on (not the browser's WebAssembly)
PACKAGE = Path(__file__).resolve().parents[1]
# The source each kind of step depends on (subpackages and modules of speedmap), for its key.
COMMON = (
    "data",
    "detections.py",
    "errors.py",
    "imageio.py",
    "preprocess.py",
    "postprocess.py",
    "runtime.py",
    "boxes.py",
    "jsonfile.py",
)
DEPENDS = {
    "train": (*COMMON, "models", "train", "eval", "cpustat.py"),
    "probe": (*COMMON, "models", "train", "cpustat.py"),
    "export": (*COMMON, "models", "export", "engine.py", "modelstore.py"),
    "score": (*COMMON, "eval", "engine.py", "modelstore.py"),
    "bench": (*COMMON, "bench", "serve", "web", "engine.py", "modelstore.py", "cpustat.py"),
}
_code_hashes: dict[tuple[str, ...], str] = {}


def code_hash(parts: tuple[str, ...]) -> str:
    """A hash of the source files of these parts of the package (``.py``, and the web page's files)."""
    if parts not in _code_hashes:
        h = hashlib.sha256()
        for part in sorted(parts):
            root = PACKAGE / part
            files = (
                sorted(p for p in root.rglob("*") if p.suffix in (".py", ".js", ".html") and "vendor" not in p.parts)
                if root.is_dir()
                else [root]
            )
            for f in files:
                if f.is_file():
                    h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes() + b"\0")
        _code_hashes[parts] = h.hexdigest()[:12]
    return _code_hashes[parts]


class UI(Protocol):
    """What the study reports as it goes (the CLI draws it with rich)."""

    def stage(self, text: str) -> None: ...  # a step starts
    def note(self, text: str) -> None: ...  # a line worth keeping
    def training(self, event: dict[str, Any]) -> None: ...  # the trainer's progress events
    def step_done(self) -> None: ...  # one planned step finished (cached or run)


class Steps:
    """``steps.json``: each finished step's key (inputs and code) and result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else {}
        self.started = time.perf_counter()

    def lookup(self, name: str, kind: str, *inputs: Any) -> tuple[str, Any, str]:
        """The step's key, its cached result (None: run it) and why it runs again ("" for a new step)."""
        inputs_key, code = key(name, *inputs, __version__), code_hash(DEPENDS[kind])
        k = key(inputs_key, code)
        entry = self.done.get(name)
        self.started = time.perf_counter()  # a step that is not cached runs from here
        if entry is not None and entry.get("key") == k:
            return k, entry["result"], ""
        why = ""
        if entry is not None:
            why = " (redone: the code changed)" if entry.get("inputs") == inputs_key else " (redone: settings changed)"
        return k, None, why

    def put(self, name: str, k: str, result: Any, *inputs: Any, seconds: float | None = None) -> Any:
        """Record a finished step; ``seconds``: its compute time when it ran elsewhere (default: since lookup)."""
        self.done[name] = {
            "key": k,
            "inputs": key(name, *inputs, __version__),
            "result": result,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - self.started if seconds is None else seconds, 1),
        }
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
        self.servers: dict[str, Any] = {}  # destination (http, http-cuda) -> its server process
        self._prepared: dict[str, tuple[TaskResult, list[Path], Plan]] = {}
        self._dests: list[str] | None = None

    # ---- datasets
    def datasets(self) -> list[tuple[str, Path]]:
        if self.cfg.data:
            return [(slug(Path(d).resolve().name), Path(d)) for d in self.cfg.data]
        from speedmap.data.tasks.make import make_task

        out = []
        imgsz = self.cfg.imgsz or self.cfg.task_imgsz  # --imgsz, else the built-in tasks' own size
        for t in self.cfg.tasks:
            self.ui.stage(f"{t}: generating {self.cfg.images} images at {imgsz} px")
            folder = make_task(t, self.out / "data" / t, seed=self.cfg.seed, images=self.cfg.images, imgsz=imgsz)
            out.append((t, folder))
        return out

    # ---- training speed, training, export, test-split score
    def probe(self, name: str, data: Path, fingerprint: str, imgsz: int, step: str = "") -> TrainProbe:
        c = self.cfg
        step = step or f"probe/{name}"
        inputs = (fingerprint, imgsz, c.batch, c.probe_steps, c.seed)
        k, cached, why = self.steps.lookup(step, "probe", *inputs)
        if cached is None:
            from speedmap.train.probe import probe_train_speed

            self.ui.stage(
                f"{name}: timing Fast and Accurate side by side ({c.probe_steps} optimizer steps each, "
                f"Fast, Accurate, Accurate, Fast){why}"
            )
            res = probe_train_speed(data, imgsz=imgsz, batch=c.batch, steps=c.probe_steps, seed=c.seed)
            cached = self.steps.put(step, k, res.to_json(), *inputs)
            self.ui.note(f"Accurate takes {res.ratio:.2f}x Fast's time per optimizer step")
        return from_plain(TrainProbe, cached)

    def train(
        self, name: str, data: Path, fingerprint: str, size: str, sched: Plan, time_limit: float | None
    ) -> tuple[str, TrainResult]:
        """Train ``size`` to a plateau within ``sched.epochs`` and, with a budget, within ``time_limit`` s."""
        step, k, cached, why, inputs, tc = self._train_step(name, data, fingerprint, size, sched, time_limit)
        if cached is None:
            from speedmap.train.trainer import TrainConfig, train

            within = f", within {time_limit / 60:.1f} min of the budget" if time_limit else ""
            self.ui.stage(
                f"{name}: {'resuming' if tc['resume'] else 'training'} {size} (at most {sched.epochs} epochs, "
                f"patience {self.cfg.patience}, at {sched.imgsz} px{within}){why}"
            )
            record = train(TrainConfig(**tc), progress=self.ui.training, log=self.ui.note)
            cached = self.steps.put(step, k, train_result(record, Path(tc["out"])), *inputs)
        return k, from_plain(TrainResult, cached)

    def _train_step(
        self, name: str, data: Path, fingerprint: str, size: str, sched: Plan, time_limit: float | None
    ) -> tuple[str, str, Any, str, tuple[Any, ...], dict[str, Any]]:
        """A training step's name, key, cached result (None: to run), why it runs, inputs, and the trainer's
        config (TrainConfig fields)."""
        c = self.cfg
        step = f"train/{name}/{size}"
        inputs = (fingerprint, size, sched.epochs, c.patience, sched.imgsz, c.batch, c.seed, c.budget_minutes)
        inputs += (c.weights,) if c.weights != "scratch" else ()  # (a scratch study keeps its earlier keys)
        inputs += ("wsd",)  # runs end annealed (warm-up, stable, cooldown): no earlier run is reused
        k, cached, why = self.steps.lookup(step, "train", *inputs)
        run = self.out / "runs" / f"{name}-{size}-{k}"
        tc = dict(
            data=str(data),
            size=size,
            epochs=sched.epochs,
            imgsz=sched.imgsz,
            batch=c.batch,
            out=str(run),
            seed=c.seed,
            patience=c.patience,
            resume=(run / "last.pt").is_file(),
            time_limit=time_limit,
            device=c.device,
            weights=c.weights,
        )
        return step, k, cached, why, inputs, tc

    def train_on_ray(self, datasets: list[tuple[str, Path]], dests: list[str]) -> None:
        """Every dataset's unfinished training steps at once, as Ray tasks; the study's loop then finds them
        done. Each dataset is set up here first (split, input size, probe, schedule)."""
        from speedmap.study.on_ray import connect, leave

        cluster = connect(self.cfg.ray or "auto")
        try:  # left when training is done: export, scoring and benchmarks run here, without Ray
            self._train_jobs_on_ray(datasets, dests, cluster)
        finally:
            leave()

    def _train_jobs_on_ray(self, datasets: list[tuple[str, Path]], dests: list[str], cluster: dict[str, Any]) -> None:
        from speedmap.study.on_ray import TrainJob, check_bench_node, task_resources, train_on_ray

        here = check_bench_node(self.cfg.bench_node)
        self.ui.note(
            f"Ray cluster: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs; benchmarks on {here}"
        )
        jobs: list[TrainJob] = []
        for name, path in datasets:
            task, _, sched = self.setup_task(name, path, dests)
            for size in self.cfg.sizes:
                limit = self._time_limit(name, sched, size)
                step, k, cached, _, inputs, tc = self._train_step(name, path, task.fingerprint, size, sched, limit)
                if cached is None:  # absolute paths: a worker's working directory is not this one
                    tc |= {"data": str(Path(tc["data"]).resolve()), "out": str(Path(tc["out"]).resolve())}
                    jobs.append(TrainJob(step, k, inputs, tc, self.out / "runs" / Path(tc["out"]).name))
        if not jobs:
            return
        self.ui.stage(f"training {len(jobs)} runs on the Ray cluster, in parallel as its resources allow")
        done = train_on_ray(jobs, task_resources(cluster, self.cfg.device), self.ui.note)
        for job, (record, worker) in zip(jobs, done, strict=True):
            result = train_result(record, job.run) | {"worker": worker}
            self.steps.put(job.step, job.key, result, *job.inputs, seconds=worker["finished"] - worker["started"])

    def export(self, name: str, size: str, train_key: str, run: str, int8_data: Path | None = None) -> str:
        """The fp32 ONNX model ``name/size``; with ``int8_data``, the int8 one ``name/size-int8`` calibrated on
        that dataset's training images."""
        variant = f"{size}{INT8_SUFFIX}" if int8_data is not None else size
        step = f"export/{name}/{variant}"
        k, cached, why = self.steps.lookup(step, "export", train_key, int8_data is not None)
        if cached is None or not (self.models_dir / name / variant / "model.onnx").is_file():
            from speedmap.export import export_model

            self.ui.stage(f"{name}: exporting {size} to ONNX{' int8' if int8_data is not None else ''}{why}")
            export_model(run, self.models_dir / name / variant, int8=int8_data, evaluate=False, log=self.ui.note)
            self.steps.put(step, k, {"model_id": f"{name}/{variant}"}, train_key, int8_data is not None)
        return k

    def score(self, name: str, data: Path, export_keys: dict[str, str]) -> dict[str, Any]:
        """Both sizes on the test split through the engine, and the paired bootstrap of the two."""
        c = self.cfg
        step = f"score/{name}"
        inputs = (export_keys, c.bootstrap_resamples, c.seed)
        k, cached, why = self.steps.lookup(step, "score", *inputs)
        if cached is not None:
            return dict(cached)
        from speedmap.data.io import load_dataset
        from speedmap.engine import Model
        from speedmap.eval.bootstrap import paired_bootstrap
        from speedmap.eval.model import evaluate_model

        ds = load_dataset(data, auto_split=True, decode=("train", "valid", "test"))  # checked in setup_task
        split = "test" if ds.split_records("test") else "valid"
        self.ui.stage(
            f"{name}: scoring the {split} split through the engine, {c.bootstrap_resamples} paired "
            f"bootstrap resamples{why}"
        )
        ev = {
            s: evaluate_model(Model.load(f"{name}/{s}", models_dir=self.models_dir), ds.split(split))
            for s in export_keys
        }
        out: dict[str, Any] = {"split": split, "images": len(ds.split_records(split)), "sizes": {}, "int8": {}}
        for s, e in ev.items():
            if not s.endswith(INT8_SUFFIX):
                out["sizes"][s] = {"map": e.metrics.map, "map50": e.metrics.map50}
        if "fast" in ev and "accurate" in ev:
            f, a = ev["fast"], ev["accurate"]
            bs = paired_bootstrap(f.gt, f.predictions, a.predictions, resamples=c.bootstrap_resamples, seed=c.seed)
            out["sizes"]["fast"].update(map_ci95=bs.a_map.to_json(), map50_ci95=bs.a_map50.to_json())
            out["sizes"]["accurate"].update(map_ci95=bs.b_map.to_json(), map50_ci95=bs.b_map50.to_json())
            out["delta"] = {
                "map": a.metrics.map - f.metrics.map,
                "map50": a.metrics.map50 - f.metrics.map50,
                "map_ci95": bs.delta_map.to_json(),
                "map50_ci95": bs.delta_map50.to_json(),
                "images": bs.images,
                "resamples": bs.resamples,
                "images_needed": bs.images_needed("map"),
            }
        for s in [v for v in ev if v.endswith(INT8_SUFFIX)]:
            fp, q = ev[s.removesuffix(INT8_SUFFIX)], ev[s]  # int8 against its own fp32 model, paired
            bs = paired_bootstrap(fp.gt, fp.predictions, q.predictions, resamples=c.bootstrap_resamples, seed=c.seed)
            out["int8"][s.removesuffix(INT8_SUFFIX)] = {
                "map": q.metrics.map,
                "map50": q.metrics.map50,
                "map_ci95": bs.b_map.to_json(),
                "map50_ci95": bs.b_map50.to_json(),
                "delta_map": q.metrics.map - fp.metrics.map,
                "delta_map_ci95": bs.delta_map.to_json(),
            }
        return dict(self.steps.put(step, k, out, *inputs))

    # ---- benchmarks
    def destinations(self) -> list[str]:
        if self._dests is None:
            self._dests = self._find_destinations()
        return list(self._dests)

    def _find_destinations(self) -> list[str]:
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
                self.ui.note(
                    "browser destination skipped: Chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver)"
                )
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():  # a GPU: its destinations too
            for cpu, gpu in (("local", "local-cuda"), ("http", "http-cuda")):
                if cpu in dests:
                    dests.insert(dests.index(cpu) + 1, gpu)
        return dests

    def bench(
        self, name: str, export_keys: dict[str, str], dest: str, images: list[Path], suffix: str = ""
    ) -> dict[str, Any]:
        """Every size on ``dest``, interleaved (Fast, Accurate, then Accurate, Fast, ...); ``suffix``: the
        models ``name/SIZE{suffix}`` (the int8 exports)."""
        c = self.cfg
        step = f"bench/{dest}/{name}{suffix}"
        inputs = (
            export_keys,
            dest,
            c.bench_seconds,
            c.bench_requests,
            c.bench_repeats,
            c.http_concurrency,
            c.local_concurrency,
            [p.name for p in images],
        )
        k, cached, why = self.steps.lookup(step, "bench", *inputs)
        if cached is not None:
            return dict(cached)
        self.ui.stage(
            f"{name}: benchmarking {' and '.join(s + suffix for s in export_keys)} on {dest}, "
            f"{c.bench_repeats} interleaved repeats{why}"
        )
        doc_path = self.out / "bench" / f"{dest}-{name}{suffix}.json"
        doc_path.parent.mkdir(parents=True, exist_ok=True)
        ids = {s: f"{name}/{s}{suffix}" for s in export_keys}
        if dest == "browser":
            result = self._bench_browser(ids, images, doc_path)
        else:
            result = self._bench_compare(ids, dest, images, doc_path)
        return dict(self.steps.put(step, k, result, *inputs))

    def _bench_compare(self, ids: dict[str, str], dest: str, images: list[Path], doc_path: Path) -> dict[str, Any]:
        from speedmap.bench.compare import compare
        from speedmap.bench.run import BenchConfig
        from speedmap.bench.targets import make_target

        c = self.cfg
        blobs = [p.read_bytes() for p in images]
        http = dest in HTTP_DESTINATIONS
        kind = self._server_url(dest) if http else dest
        made = {mid: make_target(kind, mid, blobs, models_dir=self.models_dir) for mid in ids.values()}
        levels = [1, c.http_concurrency if http else c.local_concurrency]
        cfg = BenchConfig(None, levels, duration=c.bench_seconds, requests=c.bench_requests, warmup=5)
        targets = {mid: t for mid, (t, _) in made.items()}
        infos = {mid: info for mid, (_, info) in made.items()}
        if len(targets) == 2:
            report, _ = compare(targets, cfg, infos, blobs, repeats=c.bench_repeats, early_stop=True)
        else:  # one size: nothing to interleave with
            from speedmap.bench.run import benchmark

            (mid, target), (_, info) = next(iter(targets.items())), next(iter(made.values()))
            report, _ = benchmark(target, cfg, info, blobs)
            for r in report.runs:
                r.model = mid
            report.warmup = {mid: report.warmup}
        doc_path.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        rel = str(doc_path.relative_to(self.out))
        out: dict[str, Any] = {"sizes": {}}
        for size, mid in ids.items():
            runs = [r for r in report.runs if r.model == mid]
            single = [r for r in runs if r.scenario == "single"]
            loaded = [r for r in runs if r.scenario != "single"]
            warm = report.warmup.get(mid, {}) if isinstance(report.warmup, dict) else {}
            out["sizes"][size] = dataclasses.asdict(
                Speed(_summary(single), _summary(loaded) if loaded else None, rel, warm)
            )
        if len(ids) == 2:
            single_ratio = next(r for r in report.ratios if r["scenario"] == "single")
            loaded_ratio = next((r for r in report.ratios if r["scenario"] != "single"), None)
            tp = [1.0 / v for v in loaded_ratio["throughput_ratio"]["values"] if v] if loaded_ratio else []
            out["ratio"] = dataclasses.asdict(
                SpeedRatio(
                    Spread.of(single_ratio["p50_latency_ratio"]["values"]),
                    Spread.of(tp) if tp else None,
                    len(single_ratio["p50_latency_ratio"]["values"]),  # fewer than asked once the ranking settled
                )
            )
        return out

    def _bench_browser(self, ids: dict[str, str], images: list[Path], doc_path: Path) -> dict[str, Any]:
        """The page in Chromium, one size after the other in alternating order (Fast, Accurate, Accurate,
        Fast, ...): the browser runs one page at a time, so repeats alternate rather than interleave. An
        UNSTABLE run is tried again at twice, then four times the duration, a contended one once more, as
        the other destinations'."""
        from speedmap.bench.browser import run_browser_benchmark
        from speedmap.bench.compare import settled
        from speedmap.bench.run import Tries

        c = self.cfg
        order = list(ids.items())
        runs: dict[str, list[Any]] = {s: [] for s in ids}
        docs, warm = [], {}
        for rep in range(c.bench_repeats):
            for size, mid in order if rep % 2 == 0 else order[::-1]:
                tries = Tries()
                why: str | None = ""
                while why is not None:
                    report, (res,) = run_browser_benchmark(
                        mid,
                        images,
                        self.models_dir,
                        warmup=5,
                        requests=c.bench_requests * tries.factor,
                        duration=c.bench_seconds * tries.factor,
                    )
                    why = tries.again(res, c.bench_seconds * tries.factor)
                run = report.runs[0]
                run.attempts = tries.attempts
                runs[size].append(run)
                warm.setdefault(size, report.warmup)
                docs.append({**report.to_json(), "repeat": rep})
            if {"fast", "accurate"} <= set(runs) and settled(_browser_ratios(runs)):
                break  # the ranking is settled: no more repeats
        doc_path.write_text(json.dumps(docs, indent=1) + "\n")
        rel = str(doc_path.relative_to(self.out))
        out: dict[str, Any] = {
            "sizes": {s: dataclasses.asdict(Speed(_summary(r), None, rel, warm[s])) for s, r in runs.items()}
        }
        if "fast" in runs and "accurate" in runs:
            lat = _browser_ratios(runs)
            out["ratio"] = dataclasses.asdict(SpeedRatio(Spread.of(lat), None, len(lat), interleaved=False))
        return out

    def close(self) -> None:
        """Stop the study's server processes."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    def _server_url(self, dest: str) -> str:
        """The study's server for ``dest``: ``http`` on the CPU, ``http-cuda`` on the CUDA provider."""
        if dest not in self.servers:
            from speedmap.serve.process import ServerProcess

            args = ("--providers", "cuda") if dest == "http-cuda" else ()
            self.servers[dest] = ServerProcess(self.models_dir, *args)
            self.servers[dest].start()
        return str(self.servers[dest].url)

    # ---- the whole loop
    def run(self) -> StudyResults:
        started = time.time()
        results = StudyResults(self.cfg)
        try:
            dests = self.destinations()
            results.destinations = dests
            datasets = self.datasets()
            if self.cfg.ray:
                self.train_on_ray(datasets, dests)
            for name, path in datasets:
                self.task(name, path, dests, results, started)
        finally:
            self.close()
        return self._save(results, started, finished=True)

    def setup_task(self, name: str, path: Path, dests: list[str]) -> tuple[TaskResult, list[Path], Plan]:
        """The dataset as training sees it (its split), its input size, the training-speed probe (both sizes)
        and the schedule within the budget, planned on the probe's measured speeds. The CLI calls it before
        stating the study's duration; the study's own call reuses the result."""
        if name in self._prepared:
            return self._prepared[name]
        from speedmap.data.imgsz import choose_imgsz
        from speedmap.data.io import load_dataset

        ds = load_dataset(path, auto_split=True, decode=("train", "valid", "test"))  # images that decode
        for line in ds.problems.report_lines(path):
            self.ui.note(line)
        test = [r.path for r in ds.split_records("test")] or [r.path for r in ds.split_records("valid")]
        if not test:
            raise SpeedmapError(f"{path}: no test or valid split to score and benchmark on")
        if self.cfg.imgsz:
            imgsz, reason = self.cfg.imgsz, "given with --imgsz"
        elif not self.cfg.data:
            imgsz, reason = self.cfg.task_imgsz, "the built-in task's own image size"
        else:
            imgsz, reason = choose_imgsz(ds)
        by_rule = not self.cfg.imgsz and bool(self.cfg.data) and bool(self.cfg.budget_minutes)
        floor = imgsz
        task = TaskResult(str(path), list(ds.classes), ds.fingerprint())
        task.imgsz, task.imgsz_reason, task.split = imgsz, reason, ds.split_info.to_json()
        task.corrupt_images = ds.problems.corrupt_images()
        n_train = len(ds.split_records("train"))
        if ds.split_info.source == "automatic":
            self.ui.note(f"{name}: split {ds.split_info.describe()}")
        self.ui.note(f"{name}: {n_train} training images at {imgsz} px, {reason}")
        ips, spent = None, 0.0
        if set(self.cfg.sizes) == {"fast", "accurate"}:
            grown = self._grown_imgsz(name, path, task, ds, imgsz, dests) if by_rule else imgsz
            if grown != imgsz:
                imgsz, task.imgsz = grown, grown
                task.imgsz_reason = reason = (
                    f"{reason}; the budget fits both sizes' full {self.cfg.epochs}-epoch schedule at {grown} px,"
                    " and more pixels localise better, so the study trains there"
                )
                self.ui.note(f"{name}: {grown} px instead: the budget fits the full schedule there")
            ips, spent = self._probe_ips(name, path, task, imgsz, f"probe/{name}@{imgsz}" if grown != floor else "")
            spent += float(self.steps.done.get(f"probe/{name}", {}).get("seconds", 0.0)) if grown != floor else 0.0
        sched = plan(self.cfg, n_train, imgsz, dests, ips=ips, spent_seconds=spent)
        task.plan = sched.to_json()
        self._prepared[name] = (task, test, sched)
        return task, test, sched

    def _probe_ips(self, name: str, path: Path, task: TaskResult, imgsz: int, step: str = "") -> tuple[Any, float]:
        """Both sizes' training images/s at ``imgsz`` (the probe) and the seconds the probe took."""
        probe = task.train_speed_probe = self.probe(name, path, task.fingerprint, imgsz, step)
        ips = measured_ips(probe.fast_step_s, probe.accurate_step_s, self.cfg.batch, train_threads())
        return ips, float(self.steps.done[step or f"probe/{name}"].get("seconds", 0.0))

    def _grown_imgsz(self, name: str, path: Path, task: TaskResult, ds: Any, imgsz: int, dests: list[str]) -> int:
        """The largest input size up to twice the box rule's ``imgsz`` at which both sizes' whole schedule
        (--epochs, cooldown included) still fits the budget, on the probe's speeds at ``imgsz`` scaled by size;
        ``imgsz`` if none. Kept as a step, so a resumed study trains at the size it chose."""
        from speedmap.data.imgsz import images_cap, largest_that_fits, speed_at

        step, n_train = f"imgsz/{name}", len(ds.split_records("train"))
        inputs = (task.fingerprint, imgsz, self.cfg.to_json(), dests)
        k, cached, _ = self.steps.lookup(step, "probe", *inputs)
        if cached is None:
            ips, spent = self._probe_ips(name, path, task, imgsz)

            def fits(s: int) -> bool:  # a second probe, at s, costs about the first's time scaled by the pixels
                extra = spent * (s / imgsz) ** 2
                return not plan(
                    self.cfg, n_train, s, dests, ips=speed_at(ips, imgsz, s), spent_seconds=spent + extra
                ).limited

            cached = self.steps.put(step, k, {"imgsz": largest_that_fits(imgsz, images_cap(ds), fits)}, *inputs)
        return int(cached["imgsz"])

    def task(self, name: str, path: Path, dests: list[str], results: StudyResults, started: float) -> None:
        task, test, sched = self.setup_task(name, path, dests)
        results.tasks[name] = task
        if task.train_speed_probe is not None:
            self.ui.step_done()
        trained, keys, q_keys = {}, {}, {}
        for size in self.cfg.sizes:
            tk, trained[size] = self.train(
                name, path, task.fingerprint, size, sched, self._time_limit(name, sched, size)
            )
            self.ui.step_done()
            keys[size] = self.export(name, size, tk, trained[size].run)
            if self.cfg.int8:
                q_keys[size] = self.export(name, size, tk, trained[size].run, int8_data=path)
            self._save(results, started)
        scores = self.score(name, path, {**keys, **{f"{s}{INT8_SUFFIX}": k for s, k in q_keys.items()}})
        self.ui.step_done()
        for size in self.cfg.sizes:
            task.sizes[size] = SizeResult(
                f"{name}/{size}", trained[size], _accuracy(scores["sizes"][size]), scores["images"]
            )
            q = scores.get("int8", {}).get(size)
            if q is not None:
                task.sizes[size].int8 = Int8Result(
                    f"{name}/{size}{INT8_SUFFIX}", _accuracy(q), q["delta_map"], _pair(q.get("delta_map_ci95"))
                )
        if "delta" in scores:
            task.accuracy_delta = from_plain(AccuracyDelta, scores["delta"])
        self._save(results, started)
        for dest in dests:
            self._bench_task(name, task, keys, dest, test[:50], "")
            if q_keys and dest in INT8_DESTINATIONS:
                self._bench_task(name, task, q_keys, dest, test[:50], INT8_SUFFIX)
            self.ui.step_done()
            self._save(results, started)

    def _bench_task(
        self, name: str, task: TaskResult, keys: dict[str, str], dest: str, images: list[Path], suffix: str
    ) -> None:
        got = self.bench(name, keys, dest, images, suffix)
        for size, sp in got["sizes"].items():
            holder = task.sizes[size].int8 if suffix else task.sizes[size]
            if holder is not None:
                holder.speed[dest] = from_plain(Speed, sp)
        if "ratio" in got and not suffix:
            task.speed_ratio[dest] = from_plain(SpeedRatio, got["ratio"])

    def _time_limit(self, name: str, sched: Plan, size: str) -> float | None:
        """A size's share of the budget's training time: Fast its share by epoch cost, Accurate what Fast left."""
        if sched.train_seconds is None or not sched.limited:
            return None
        from speedmap.study.config import epoch_seconds

        cost = {s: epoch_seconds(s, sched.imgsz, sched.train_images, sched.ips) for s in self.cfg.sizes}
        spent = sum(
            float(self.steps.done.get(f"train/{name}/{s}", {}).get("seconds", 0.0)) for s in self.cfg.sizes if s != size
        )
        if size == self.cfg.sizes[-1] and len(self.cfg.sizes) == 2:
            return max(sched.train_seconds - spent, cost[size] * 2)
        return sched.train_seconds * cost[size] / sum(cost.values())

    def _save(self, results: StudyResults, started: float, finished: bool = False) -> StudyResults:
        results.provenance = provenance(self.command)
        results.provenance["wall_seconds"] = round(time.time() - started, 1)  # this invocation
        results.provenance["steps_seconds"] = round(self.steps.seconds(), 1)  # all finished steps
        results.complete = finished
        if finished:
            from speedmap.study.recommend import recommend

            results.recommendation = recommend(results)
        write_json_atomic(self.out / RESULTS_FILE, results.to_json())
        return results


def train_threads() -> int:
    """The CPU threads training runs on (torch's default: the cores this process may use)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pair(v: Any) -> tuple[float, float] | None:
    return None if v is None else (float(v[0]), float(v[1]))


def _accuracy(m: dict[str, Any]) -> Accuracy:
    return Accuracy(m["map"], m["map50"], _pair(m.get("map_ci95")), _pair(m.get("map50_ci95")))


def _summary(runs: list[Any]) -> dict[str, Any]:
    """Interleaved repeats of one scenario for one model: medians, and VALID only if every repeat was."""
    import statistics

    med = lambda vals: statistics.median(vals) if vals else None  # noqa: E731
    return dataclasses.asdict(
        RunSummary(
            p50_ms=med([r.p50_ms for r in runs if r.p50_ms is not None]) or 0.0,
            p90_ms=med([r.p90_ms for r in runs if r.p90_ms is not None]),
            throughput_rps=med([r.throughput_rps for r in runs]) or 0.0,
            valid=all(r.valid for r in runs),
            errors=sum(r.error_count for r in runs),
            concurrency=runs[0].concurrency or 1,
            repeats=len(runs),
            unstable_repeats=sum(not r.valid for r in runs),
            other_cpu_share=max((r.other_cpu_share for r in runs if r.other_cpu_share is not None), default=None),
        )
    )


TRAIN_FIELDS = (
    "size",
    "params",
    "flops",
    "imgsz",
    "total_seconds",
    "cpu_seconds",
    "train_images_per_second",
    "best_epoch",
    "best_map",
    "best_map50",
    "converged",
    "convergence",
    "contended",
    "other_cpu_share",
    "time_to_95_seconds",
    "epoch_to_95",
    "budget",
)


def _browser_ratios(runs: dict[str, list[Any]]) -> list[float]:
    """Accurate's p50 latency over Fast's, per finished pair of browser runs."""
    return [a.p50_ms / f.p50_ms for f, a in zip(runs["fast"], runs["accurate"], strict=False)]


def train_result(record: dict[str, Any], run: Path) -> dict[str, Any]:
    """A training run's record (``train.json``) and per-epoch log, as the study keeps them."""
    doc = {k: record.get(k) for k in TRAIN_FIELDS}
    doc.update(
        epochs_run=record.get("epochs_run", record["epochs"]),
        epochs_max=record.get("epochs_planned"),
        run=str(run),
        train_images=record["dataset"]["train_images"],
        history=_history(run),
    )
    doc["converged"] = bool(doc["converged"])
    doc["contended"] = bool(doc["contended"])
    doc["convergence"] = doc["convergence"] or {}
    return doc


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


def provenance(command: list[str]) -> dict[str, Any]:
    """The benchmark's :func:`~speedmap.bench.run.machine`, the code's hash, the command, and torch."""
    from speedmap.bench.run import machine

    prov: dict[str, Any] = {
        **machine(),
        "code": code_hash(("",)),
        "command": shlex.join(command) if command else None,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        prov["torch"] = torch.__version__
    except ImportError:
        pass
    return prov
