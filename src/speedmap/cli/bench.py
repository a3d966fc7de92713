"""``speedmap bench``: practical inference speed of a model on a destination (in-process or HTTP)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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


def _runs_table(report: BenchReport, title: str) -> Table:
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
    return t


def _phases_table(report: BenchReport, phases: list[str]) -> Table:
    """Where the time goes: the p50 of each phase per run, and the busiest client process's CPU."""
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
    return b


def _ratios_table(report: BenchReport) -> Table:
    """--compare: the second model over the first, median [min-max] over the interleaved repeats."""
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
    return c


def _print_runs(report: BenchReport, title: str) -> None:
    out.print(_runs_table(report, title))
    compare = report.compare is not None
    phases = [p for p in PHASE_ORDER if any(p in r.breakdown_ms for r in report.runs)]
    if phases and not compare:
        out.print(_phases_table(report, phases))
    if compare:
        out.print(_ratios_table(report))
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


# The command's arguments and options, declared here so that its signature is a list of names and defaults.
TargetArg = Annotated[str, typer.Argument(help="local | local-cuda | http://HOST:PORT | browser")]
ModelOpt = Annotated[str, typer.Option("--model", help="Model id (project/version) or folder.")]
ImagesOpt = Annotated[Path, typer.Option("--images", help="Folder of images to send.")]
ModelsOpt = Annotated[Path | None, typer.Option("--models", help="Model store for local (default ./models).")]
ScenarioOpt = Annotated[str | None, typer.Option("--scenario", help="single | concurrency | rate | offline.")]
ConcurrencyOpt = Annotated[str, typer.Option("--concurrency", help="In-flight counts for the sweep.")]
RateOpt = Annotated[float | None, typer.Option("--rate", help="Requests per second (rate scenario).")]
ArrivalsOpt = Annotated[str, typer.Option("--arrivals", help="poisson | constant (rate scenario).")]
DurationOpt = Annotated[float, typer.Option("--duration", help="Minimum seconds per run.")]
RequestsOpt = Annotated[int, typer.Option("--requests", help="Minimum requests per run.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="Warm-up requests (the first is reported as cold).")]
WarmupSecondsOpt = Annotated[float, typer.Option("--warmup-seconds", help="Warm up at least this long as well.")]
ProvidersOpt = Annotated[str | None, typer.Option("--providers", help="local: execution providers (cpu, cuda, ...).")]
LegacyOpt = Annotated[bool, typer.Option("--legacy", help="Use the legacy POST /{project}/{version} route.")]
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key")]
ClientsOpt = Annotated[int, typer.Option("--clients", help="Client processes for HTTP targets (high rates).")]
CompareOpt = Annotated[str | None, typer.Option("--compare", help="A second model, run interleaved with --model.")]
RepeatsOpt = Annotated[int, typer.Option("--repeats", help="Interleaved repeats per scenario with --compare.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="browser: wasm | webgpu.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="browser: WebAssembly threads (default: all).")]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the results JSON (and CSV, plots) here.")]
MaxErrorRateOpt = Annotated[float | None, typer.Option("--max-error-rate", help="Fail (exit 1) above this rate.")]
NoRetryOpt = Annotated[
    bool,
    typer.Option(
        "--no-retry", help="Do not run an UNSTABLE run again at 2x, 4x the duration, nor a contended one once more."
    ),
]


@clean_errors
def bench_command(
    target: TargetArg,
    model: ModelOpt,
    images: ImagesOpt,
    models_dir: ModelsOpt = None,
    scenario: ScenarioOpt = None,
    concurrency: ConcurrencyOpt = "1,4,16,100",
    rate: RateOpt = None,
    arrivals: ArrivalsOpt = "poisson",
    duration: DurationOpt = 10.0,
    requests: RequestsOpt = 100,
    warmup: WarmupOpt = 10,
    warmup_seconds: WarmupSecondsOpt = 0.0,
    providers: ProvidersOpt = None,
    legacy: LegacyOpt = False,
    api_key: ApiKeyOpt = None,
    clients: ClientsOpt = 1,
    compare_id: CompareOpt = None,
    repeats: RepeatsOpt = 3,
    backend: BackendOpt = "wasm",
    threads: ThreadsOpt = None,
    json_out: JsonOpt = None,
    max_error_rate: MaxErrorRateOpt = None,
    no_retry: NoRetryOpt = False,
) -> None:
    """Latency percentiles and throughput, one frame at a time and with many in flight."""
    from speedmap.bench.run import BenchConfig, plan
    from speedmap.bench.targets import load_images

    _check_choices(scenario, arrivals, clients, repeats)
    paths = load_images(images)
    if not paths:
        raise SpeedmapError(f"no images in {images}")
    blobs = [p.read_bytes() for p in paths]
    levels = _levels(concurrency)
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
    job = _Job(target, model, compare_id, repeats, cfg, paths, blobs, models_dir, legacy, api_key, providers)
    job.announce(len(plan(cfg)))
    if target == "browser":
        report, results, title = job.run_browser(backend, threads)
    elif compare_id:
        report, results, title = job.run_compare()
    else:
        report, results, title = job.run_one()
    _print_runs(report, title)
    _print_warmup(report, model, compare_id)
    if json_out is not None:
        job.write(json_out, report, results)
    _check_error_rate(report, max_error_rate)


def _check_choices(scenario: str | None, arrivals: str, clients: int, repeats: int) -> None:
    if scenario not in (None, "single", "concurrency", "rate", "offline"):
        raise SpeedmapError(f"unknown scenario {scenario!r}: single, concurrency, rate or offline")
    if arrivals not in ("poisson", "constant"):
        raise SpeedmapError(f"unknown arrivals {arrivals!r}: poisson or constant")
    if clients < 1 or repeats < 1:
        raise SpeedmapError("--clients and --repeats must be at least 1")


def _levels(concurrency: str) -> list[int]:
    """``--concurrency 1,4,16``: the in-flight counts of the sweep."""
    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        raise SpeedmapError(f"--concurrency must be a comma-separated list of integers, got {concurrency!r}") from None
    if not levels or min(levels) < 1:
        raise SpeedmapError("--concurrency needs in-flight counts of at least 1")
    return levels


@dataclass
class _Job:
    """One ``speedmap bench``: what to run where, and how to say so on the way."""

    target: str
    model: str
    compare_id: str | None
    repeats: int
    cfg: Any  # speedmap.bench.run.BenchConfig
    paths: list[Path]
    blobs: list[bytes]
    models_dir: Path | None
    legacy: bool
    api_key: str | None
    providers: str | None

    def announce(self, steps: int) -> None:
        """How many runs, and at least how long; the browser runs the single scenario only."""
        cfg = self.cfg
        runs_per = steps * (2 * self.repeats if self.compare_id else 1)
        if self.target == "browser":
            if cfg.scenario not in (None, "single") or self.compare_id or cfg.clients != 1:
                raise SpeedmapError("the browser target runs the single scenario only, without --compare or --clients")
            runs_per = 1
        retries = self.target != "browser" and cfg.retry_unstable
        retry = " (an UNSTABLE run is tried again at 2x, then 4x the duration)" if retries else ""
        err.print(
            f"{runs_per} run{'s' if runs_per > 1 else ''}, at least {runs_per * cfg.duration:g} s{retry}",
            highlight=False,
        )

    def progress(self, kind: str, value: float, rep: int = 1, reps: int = 1) -> None:
        tail = f" [repeat {rep}/{reps}]" if reps > 1 else ""
        err.print(
            f"running {escape(kind)} {value:g} (at least {self.cfg.duration:g} s and {self.cfg.requests} requests)"
            f"{tail}",
            highlight=False,
        )

    @staticmethod
    def note(text: str) -> None:
        err.print(escape(text), highlight=False)

    def make(self, model_id: str) -> tuple[Target, dict[str, Any]]:
        from speedmap.bench.targets import make_target

        return make_target(
            self.target,
            model_id,
            self.blobs,
            models_dir=self.models_dir,
            legacy=self.legacy,
            api_key=self.api_key,
            providers=self.providers,
        )

    def run_browser(self, backend: str, threads: int | None) -> tuple[BenchReport, list[Any], str]:
        from speedmap.bench.browser import run_browser_benchmark

        report, runs = run_browser_benchmark(
            self.model,
            self.paths,
            self.models_dir,
            requests=self.cfg.requests,
            warmup=self.cfg.warmup,
            duration=self.cfg.duration,
            backend=backend,
            threads=threads,
            progress=self.note,
        )
        return report, runs, f"{escape(self.model)} in the browser ({report.provenance.get('backend')})"

    def run_compare(self) -> tuple[BenchReport, list[Any], str]:
        """--model and --compare interleaved; the results are (model, repeat, run) triples."""
        from speedmap.bench.compare import compare

        assert self.compare_id is not None
        model, other = self.model, self.compare_id
        tgt, info = self.make(model)
        tgt_b, info_b = self.make(other)
        with LiveStatus(self.cfg.duration) as live:
            report, pairs = compare(
                {model: tgt, other: tgt_b},
                self.cfg,
                {model: info, other: info_b},
                self.blobs,
                self.repeats,
                self.progress,
                live.state,
                self.note,
            )
        return report, pairs, f"{escape(model)} vs {escape(other)} on {escape(self.target)}"

    def run_one(self) -> tuple[BenchReport, list[Any], str]:
        from speedmap.bench.run import benchmark

        tgt, info = self.make(self.model)
        with LiveStatus(self.cfg.duration) as live:
            report, runs = benchmark(tgt, self.cfg, info, self.blobs, self.progress, live.state, self.note)
        return report, runs, f"{escape(self.model)} on {escape(self.target)}"

    def write(self, json_out: Path, report: BenchReport, results: list[Any]) -> None:
        """The report's JSON and CSV, and plots: of each model's last repeat with --compare, else of the runs."""
        from speedmap.bench.plots import plot_compare, plot_runs, write_csv

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        written = [json_out, write_csv(report, json_out.with_suffix(".csv"))]
        if self.compare_id:
            for m in (self.model, self.compare_id):
                last = [r for mm, rep, r in results if mm == m and rep == self.repeats - 1]
                slug = "_" + re.sub(r"[^A-Za-z0-9]+", "-", m).strip("-")
                written += plot_runs(last, f"{m} on {self.target}", json_out.parent, slug)
            written.append(plot_compare(report, json_out.parent))
        else:
            written += plot_runs(results, f"{self.model} on {self.target}", json_out.parent)
        err.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False, soft_wrap=True)


def _print_warmup(report: BenchReport, model: str, compare_id: str | None) -> None:
    """The cold first request (and model, page and session load times) of each model."""
    warm = report.warmup
    for name, w in warm.items() if compare_id else [(model, warm)]:
        extra = "".join(
            f", {k.removesuffix('_ms').replace('_', ' ')} {w[k]:.0f} ms"
            for k in ("model_load_ms", "page_load_ms", "session_create_ms")
            if k in w
        )
        err.print(f"{escape(name)}: cold first request {w['cold_first_request_ms']:.1f} ms{extra}", highlight=False)


def _check_error_rate(report: BenchReport, max_error_rate: float | None) -> None:
    failed = sum(r.error_count for r in report.runs)
    total = sum(r.requests for r in report.runs)
    if max_error_rate is not None and total and failed / total > max_error_rate:
        err.print(f"[red]error rate {failed / total:.2%} is above --max-error-rate {max_error_rate:.2%}[/]")
        raise typer.Exit(1)
