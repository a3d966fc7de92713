"""The study's benchmark steps: every destination with Fast and Accurate interleaved (the browser's
alternating), each a cached step; the study's server processes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from speedmap.study.config import StudyConfig
from speedmap.study.records import browser_ratios, run_summary
from speedmap.study.results import Speed, SpeedRatio, Spread
from speedmap.study.steps import UI, Steps

HTTP_DESTINATIONS = ("http", "http-cuda")  # benchmarked through a server process


class BenchSteps:
    """Part of :class:`~speedmap.study.run.Study`: its benchmarks and servers."""

    cfg: StudyConfig
    out: Path
    ui: UI
    steps: Steps
    models_dir: Path
    servers: dict[str, Any]  # destination (http, http-cuda) -> its server process
    _dests: list[str] | None

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
            c.bench_retry,
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
        cfg = BenchConfig(
            None, levels, duration=c.bench_seconds, requests=c.bench_requests, warmup=5, retry_unstable=c.bench_retry
        )
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
                Speed(run_summary(single), run_summary(loaded) if loaded else None, rel, warm)
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
                tries = Tries(c.bench_retry)
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
            if {"fast", "accurate"} <= set(runs) and settled(browser_ratios(runs)):
                break  # the ranking is settled: no more repeats
        doc_path.write_text(json.dumps(docs, indent=1) + "\n")
        rel = str(doc_path.relative_to(self.out))
        out: dict[str, Any] = {
            "sizes": {s: dataclasses.asdict(Speed(run_summary(r), None, rel, warm[s])) for s, r in runs.items()}
        }
        if "fast" in runs and "accurate" in runs:
            lat = browser_ratios(runs)
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
