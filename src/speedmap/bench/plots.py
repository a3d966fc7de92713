"""Benchmark outputs beside the JSON: a CSV row per run, the latency CDF per run, throughput vs concurrency."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from speedmap.bench.compare import Spread
from speedmap.bench.loadgen import RunResult
from speedmap.bench.results import BenchReport
from speedmap.plotting import pyplot, save

CSV_KEYS = [
    "scenario",
    "concurrency",
    "target_rate",
    "requests",
    "errors",
    "duration_s",
    "throughput_rps",
    "p50",
    "p90",
    "p95",
    "p99",
    "p999",
    "min",
    "max",
    "mean",
    "std",
    "valid",
    "tries",
    "other_cpu_share",
]


def write_csv(report: BenchReport, path: Path) -> Path:
    """One row per run; with ``--compare`` also the model and repeat; phases as ``<phase>_p50`` columns."""
    extra = ["model", "repeat"] if report.compare is not None else []
    phases = sorted({p for r in report.runs for p in r.breakdown_ms})
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=extra + CSV_KEYS + [f"{p}_p50" for p in phases])
        w.writeheader()
        for r in report.runs:
            row: dict[str, Any] = {"model": r.model, "repeat": r.repeat} if extra else {}
            row.update(
                scenario=r.scenario,
                concurrency=r.concurrency,
                target_rate=r.target_rate,
                requests=r.requests,
                errors=r.error_count,
                duration_s=r.duration_s,
                throughput_rps=r.throughput_rps,
                **r.latency_ms,
                valid=r.valid,
                tries=r.tries,
                other_cpu_share=r.other_cpu_share,
            )
            row.update({f"{p}_p50": v["p50"] for p, v in r.breakdown_ms.items()})
            w.writerow(row)
    return path


def plot_compare(report: BenchReport, folder: Path) -> Path:
    """``compare.png``: per scenario, B/A ratios of p50 latency and throughput, median with min-max bars."""
    plt = pyplot()
    rows = report.ratios
    labels = [f"{r['scenario']} {r['concurrency'] or r['target_rate']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(rows) + 2), 4.5))
    width = 0.38
    for k, (key, name) in enumerate((("p50_latency_ratio", "p50 latency"), ("throughput_ratio", "throughput"))):
        spreads = [Spread.from_json(r[key]) for r in rows]
        med = [s.median for s in spreads]
        lo = [s.median - s.min for s in spreads]
        hi = [s.max - s.median for s in spreads]
        xs = [i + (k - 0.5) * width for i in range(len(rows))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=4, label=f"{name} ({report.compare} / {report.model})")
        for x, s in zip(xs, spreads, strict=True):
            ax.annotate(
                f"{s.median:.2f}x", (x, s.max), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8
            )
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_xticks(range(len(rows)), labels)
    reps = report.provenance.get("repeats")
    ax.set(
        ylabel="ratio (median, bars: min-max)",
        title=f"{report.compare} vs {report.model} on {report.target}\n{reps} interleaved repeats",
    )
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, folder / "compare.png")


def plot_runs(runs: list[RunResult], title: str, folder: Path, suffix: str = "") -> list[Path]:
    """``latency_cdf.png`` (one curve per run, from the HdrHistogram) and, for sweeps,
    ``throughput_vs_concurrency.png``."""
    plt = pyplot()
    out = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r.recorder.count == 0:
            continue
        xs, ys = r.recorder.cdf_ms()
        label = f"{r.scenario} {r.concurrency or r.target_rate}"
        ax.step(xs, ys, where="post", label=label)
    ax.set(xscale="log", xlabel="latency (ms, log scale)", ylabel="fraction of requests", title=f"{title}: latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    out.append(save(fig, folder / f"latency_cdf{suffix}.png"))
    sweep = [r for r in runs if r.concurrency]
    if len(sweep) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r.concurrency for r in sweep], [r.recorder.count / r.duration_s for r in sweep], marker="o")
        ax.set(
            xscale="log",
            xlabel="requests in flight",
            ylabel="throughput (req/s)",
            title=f"{title}: throughput vs concurrency",
        )
        ax.grid(True, alpha=0.3)
        out.append(save(fig, folder / f"throughput_vs_concurrency{suffix}.png"))
    return out
