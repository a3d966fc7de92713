"""``speedmap bench``: practical inference speed of a model on a destination (in-process or HTTP)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from speedmap.bench.results import BenchReport, BenchRun, Target
from speedmap.cli.common import clean_errors, err, out
from speedmap.errors import SpeedmapError

PHASE_ORDER = [
    "client_encode",
    "network_queue",
    "server",
    "client_decode",  # http
    "queue",
    "decode_preprocess",
    "inference",
    "postprocess",  # local
    "decode",
    "letterbox",
    "model",
    "nms",
]  # browser


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _valid(r: BenchRun) -> str:
    tail = f" after {r.tries} tries" if r.tries > 1 else ""
    return ("VALID" if r.valid else "[yellow]UNSTABLE[/]") + tail


def _print_runs(report: BenchReport, title: str) -> None:
    compare = report.compare is not None
    cols = (["model", "rep"] if compare else []) + [
        "scenario",
        "in flight / rate",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "valid",
    ]
    t = Table(*cols, title=title)
    for r in report.runs:
        lat = r.latency_ms
        row = [escape(r.model or ""), str((r.repeat or 0) + 1)] if compare else []
        t.add_row(
            *row,
            r.scenario,
            f"{r.concurrency or r.target_rate}",
            str(r.requests),
            str(r.error_count),
            f"{r.throughput_rps:.1f}",
            _fmt(lat["p50"]),
            _fmt(lat["p90"]),
            _fmt(lat["p99"]),
            _fmt(lat["max"]),
            _valid(r),
        )
    out.print(t)
    phases = [p for p in PHASE_ORDER if any(p in r.breakdown_ms for r in report.runs)]
    if phases and not compare:
        b = Table(
            "scenario",
            "in flight / rate",
            *(f"{p} p50" for p in phases),
            "client CPU",
            title="where the time goes (ms, p50 per phase)",
        )
        for r in report.runs:
            cpus = r.client.get("cpu_per_process") or []
            cpu = f"{max(cpus):.0%}" if cpus else "-"
            b.add_row(
                r.scenario,
                f"{r.concurrency or r.target_rate}",
                *(_fmt(r.breakdown_ms.get(p, {}).get("p50")) for p in phases),
                cpu,
            )
        out.print(b)
    if compare:
        from speedmap.bench.compare import Spread

        c = Table(
            "scenario",
            "in flight / rate",
            "p50 latency ratio",
            "throughput ratio",
            title=f"{escape(report.compare or '')} / {escape(report.model or '')}: median \\[min-max] over "
            f"{report.provenance.get('repeats')} interleaved repeats",
        )
        for x in report.ratios:
            lr, tr = Spread.from_json(x["p50_latency_ratio"]), Spread.from_json(x["throughput_ratio"])
            c.add_row(
                x["scenario"],
                f"{x['concurrency'] or x['target_rate']}",
                f"{lr.median:.2f}x [{lr.min:.2f}-{lr.max:.2f}]",
                f"{tr.median:.2f}x [{tr.min:.2f}-{tr.max:.2f}]",
            )
        out.print(c)
    for r in report.runs:
        for w in r.warnings:
            err.print(f"[yellow]warning[/] ({r.label}): {escape(w)}")


class LiveStatus:
    """A live status line on stderr while a run goes: elapsed, completed, errors, req/s, p50."""

    def __init__(self, duration: float) -> None:
        from speedmap.bench.run import Live

        self.state, self.duration = Live(), duration
        self.stop = threading.Event()

    def _text(self) -> str:
        st = self.state
        if not st.label:
            return "warming up"
        elapsed = time.perf_counter() - st.started
        head = f"{st.label}: {elapsed:.0f}/{st.duration if st.duration is not None else self.duration:g} s"
        rec = st.recorder
        if rec is None:
            return head + " (client processes)"
        ok, errors = rec.count, sum(rec.errors.values())
        p50 = rec.hist.get_value_at_percentile(50) / 1e3 if ok else 0.0
        return f"{head}, {ok} done, {errors} errors, {ok / max(elapsed, 1e-9):.1f} req/s, p50 {p50:.1f} ms"

    def _loop(self, status: Any) -> None:
        while not self.stop.wait(0.5):
            with contextlib.suppress(Exception):  # a display glitch must never end a benchmark
                status.update(self._text())

    def __enter__(self) -> LiveStatus:
        self.status = err.status("warming up")
        self.status.__enter__()
        self.thread = threading.Thread(target=self._loop, args=(self.status,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.status.__exit__(None, None, None)


@clean_errors
def bench_command(
    target: str = typer.Argument(..., help="local | local-cuda | http://HOST:PORT | browser"),
    model: str = typer.Option(..., "--model", help="Model id (project/version) or folder."),
    images: Path = typer.Option(..., "--images", help="Folder of images to send."),
    models_dir: Path | None = typer.Option(None, "--models", help="Model store for local (default ./models)."),
    scenario: str | None = typer.Option(None, "--scenario", help="single | concurrency | rate | offline."),
    concurrency: str = typer.Option("1,4,16,100", "--concurrency", help="In-flight counts for the sweep."),
    rate: float | None = typer.Option(None, "--rate", help="Requests per second (rate scenario)."),
    arrivals: str = typer.Option("poisson", "--arrivals", help="poisson | constant (rate scenario)."),
    duration: float = typer.Option(10.0, "--duration", help="Minimum seconds per run."),
    requests: int = typer.Option(100, "--requests", help="Minimum requests per run."),
    warmup: int = typer.Option(10, "--warmup", help="Warm-up requests (the first is reported as cold)."),
    warmup_seconds: float = typer.Option(0.0, "--warmup-seconds", help="Warm up at least this long as well."),
    providers: str | None = typer.Option(None, "--providers", help="local: execution providers (cpu, cuda, ...)."),
    legacy: bool = typer.Option(False, "--legacy", help="Use the legacy POST /{project}/{version} route."),
    api_key: str | None = typer.Option(None, "--api-key"),
    clients: int = typer.Option(1, "--clients", help="Client processes for HTTP targets (high rates)."),
    compare_id: str | None = typer.Option(None, "--compare", help="A second model, run interleaved with --model."),
    repeats: int = typer.Option(3, "--repeats", help="Interleaved repeats per scenario with --compare."),
    backend: str = typer.Option("wasm", "--backend", help="browser: wasm | webgpu."),
    threads: int | None = typer.Option(None, "--threads", help="browser: WebAssembly threads (default: all)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results JSON (and CSV, plots) here."),
    max_error_rate: float | None = typer.Option(None, "--max-error-rate", help="Fail (exit 1) above this rate."),
    no_retry: bool = typer.Option(False, "--no-retry", help="Do not run an UNSTABLE run again at 2x, 4x the duration."),
) -> None:
    """Latency percentiles and throughput, one frame at a time and with many in flight."""
    from speedmap.bench.run import BenchConfig, benchmark, plan
    from speedmap.bench.targets import load_images, make_target

    if scenario not in (None, "single", "concurrency", "rate", "offline"):
        raise SpeedmapError(f"unknown scenario {scenario!r}: single, concurrency, rate or offline")
    if arrivals not in ("poisson", "constant"):
        raise SpeedmapError(f"unknown arrivals {arrivals!r}: poisson or constant")
    if clients < 1 or repeats < 1:
        raise SpeedmapError("--clients and --repeats must be at least 1")
    paths = load_images(images)
    if not paths:
        raise SpeedmapError(f"no images in {images}")
    blobs = [p.read_bytes() for p in paths]
    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise SpeedmapError(f"--concurrency must be a comma-separated list of integers, got {concurrency!r}") from None
    if not levels or min(levels) < 1:
        raise SpeedmapError("--concurrency needs in-flight counts of at least 1")
    cfg = BenchConfig(
        scenario,
        levels,
        rate,
        arrivals,
        duration,
        requests,
        warmup,
        clients,
        warmup_seconds,
        retry_unstable=not no_retry,
    )
    steps = plan(cfg)

    def progress(kind: str, value: float, rep: int = 1, reps: int = 1) -> None:
        tail = f" [repeat {rep}/{reps}]" if reps > 1 else ""
        err.print(
            f"running {escape(kind)} {value:g} (at least {duration:g} s and {requests} requests){tail}", highlight=False
        )

    runs_per = len(steps) * (2 * repeats if compare_id else 1)
    if target == "browser":
        if scenario not in (None, "single") or compare_id or clients != 1:
            raise SpeedmapError("the browser target runs the single scenario only, without --compare or --clients")
        runs_per = 1
    retries = target != "browser" and not no_retry
    retry = " (an UNSTABLE run is tried again at 2x, then 4x the duration)" if retries else ""
    err.print(
        f"{runs_per} run{'s' if runs_per > 1 else ''}, at least {runs_per * duration:g} s{retry}", highlight=False
    )

    def note(text: str) -> None:
        err.print(escape(text), highlight=False)

    def make(model_id: str) -> tuple[Target, dict[str, Any]]:
        return make_target(
            target, model_id, blobs, models_dir=models_dir, legacy=legacy, api_key=api_key, providers=providers
        )

    if target == "browser":
        from speedmap.bench.browser import run_browser_benchmark

        report, runs = run_browser_benchmark(
            model,
            paths,
            models_dir,
            requests=requests,
            warmup=warmup,
            duration=duration,
            backend=backend,
            threads=threads,
            progress=lambda m: err.print(escape(m), highlight=False),
        )
        title = f"{escape(model)} in the browser ({report.provenance.get('backend')})"
    elif compare_id:
        from speedmap.bench.compare import compare

        tgt, info = make(model)
        tgt_b, info_b = make(compare_id)
        with LiveStatus(duration) as live:
            report, pairs = compare(
                {model: tgt, compare_id: tgt_b},
                cfg,
                {model: info, compare_id: info_b},
                blobs,
                repeats,
                progress,
                live.state,
                note,
            )
        title = f"{escape(model)} vs {escape(compare_id)} on {escape(target)}"
    else:
        tgt, info = make(model)
        with LiveStatus(duration) as live:
            report, runs = benchmark(tgt, cfg, info, blobs, progress, live.state, note)
        title = f"{escape(model)} on {escape(target)}"
    _print_runs(report, title)
    warm = report.warmup
    for name, w in warm.items() if compare_id else [(model, warm)]:
        extra = "".join(
            f", {k.removesuffix('_ms').replace('_', ' ')} {w[k]:.0f} ms"
            for k in ("model_load_ms", "page_load_ms", "session_create_ms")
            if k in w
        )
        err.print(f"{escape(name)}: cold first request {w['cold_first_request_ms']:.1f} ms{extra}", highlight=False)
    if json_out is not None:
        from speedmap.bench.plots import plot_compare, plot_runs, write_csv

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        written = [json_out, write_csv(report, json_out.with_suffix(".csv"))]
        if compare_id:
            for m in (model, compare_id):
                last = [r for mm, rep, r in pairs if mm == m and rep == repeats - 1]
                slug = "_" + re.sub(r"[^A-Za-z0-9]+", "-", m).strip("-")
                written += plot_runs(last, f"{m} on {target}", json_out.parent, slug)
            written.append(plot_compare(report, json_out.parent))
        else:
            written += plot_runs(runs, f"{model} on {target}", json_out.parent)
        err.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False, soft_wrap=True)
    failed = sum(r.error_count for r in report.runs)
    total = sum(r.requests for r in report.runs)
    if max_error_rate is not None and total and failed / total > max_error_rate:
        err.print(f"[red]error rate {failed / total:.2%} is above --max-error-rate {max_error_rate:.2%}[/]")
        raise typer.Exit(1)
