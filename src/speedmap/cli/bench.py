"""``speedmap bench``: practical inference speed of a model on a destination (in-process or HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from speedmap.cli.common import clean_errors, err, out
from speedmap.errors import SpeedmapError


@clean_errors
def bench_command(
    target: str = typer.Argument(..., help="local | http://HOST:PORT"),
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
    legacy: bool = typer.Option(False, "--legacy", help="Use the legacy POST /{project}/{version} route."),
    api_key: str | None = typer.Option(None, "--api-key"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results JSON here."),
    max_error_rate: float | None = typer.Option(None, "--max-error-rate", help="Fail (exit 1) above this rate."),
) -> None:
    """Latency percentiles and throughput, one frame at a time and with many in flight."""
    from speedmap.bench.run import BenchConfig, benchmark
    from speedmap.bench.targets import HttpTarget, LocalTarget, load_images

    if scenario not in (None, "single", "concurrency", "rate", "offline"):
        raise SpeedmapError(f"unknown scenario {scenario!r}: single, concurrency, rate or offline")
    paths = load_images(images)
    if not paths:
        raise SpeedmapError(f"no images in {images}")
    blobs = [p.read_bytes() for p in paths]
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    cfg = BenchConfig(scenario, levels, rate, arrivals, duration, requests, warmup)
    if target == "local":
        from speedmap.engine import Model

        engine = Model.load(model, models_dir=models_dir)
        tgt: LocalTarget | HttpTarget = LocalTarget(engine, blobs)
        info = engine.info()
    elif target.startswith(("http://", "https://")):
        tgt = HttpTarget(target, model, blobs, legacy=legacy, api_key=api_key)
        info = {"model_id": model, "route": "legacy" if legacy else "v1"}
    else:
        raise SpeedmapError(f"unknown target {target!r}: local or http://HOST:PORT")

    def progress(kind: str, value: float) -> None:
        err.print(f"running {kind} {value:g} (at least {duration:g} s and {requests} requests)", highlight=False)

    doc, runs = benchmark(tgt, cfg, info, blobs, progress)
    t = Table("scenario", "in flight / rate", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms",
              "max ms", "valid", title=f"{escape(model)} on {escape(target)}")  # fmt: skip
    failed = total = 0
    for r in doc["runs"]:
        lat = r["latency_ms"]
        errs = sum(r["errors"].values())
        failed, total = failed + errs, total + r["requests"]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        t.add_row(r["scenario"], f"{r['concurrency'] or r['target_rate']}", str(r["requests"]), str(errs),
                  f"{r['throughput_rps']:.1f}", fmt(lat["p50"]), fmt(lat["p90"]), fmt(lat["p99"]), fmt(lat["max"]),
                  "VALID" if r["valid"] else "[yellow]UNSTABLE[/]")  # fmt: skip
    out.print(t)
    err.print(f"cold first request {doc['warmup']['cold_first_request_ms']:.1f} ms", highlight=False)
    if json_out is not None:
        from speedmap.bench.plots import plot_runs, write_csv

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1) + "\n")
        written = [json_out, write_csv(doc, json_out.with_suffix(".csv"))]
        written += plot_runs(runs, f"{model} on {target}", json_out.parent)
        err.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False, soft_wrap=True)
    if max_error_rate is not None and total and failed / total > max_error_rate:
        err.print(f"[red]error rate {failed / total:.2%} is above --max-error-rate {max_error_rate:.2%}[/]")
        raise typer.Exit(1)
