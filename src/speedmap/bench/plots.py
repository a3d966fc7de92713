"""Benchmark outputs beside the JSON: a CSV row per run, the latency CDF per run, throughput vs concurrency."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from speedmap.bench.loadgen import RunResult
from speedmap.plotting import pyplot, save

CSV_KEYS = ["scenario", "concurrency", "target_rate", "requests", "errors", "duration_s", "throughput_rps",
            "p50", "p90", "p95", "p99", "p999", "min", "max", "mean", "std", "valid"]  # fmt: skip


def write_csv(doc: dict[str, Any], path: Path) -> Path:
    """One row per run; with ``--compare`` also the model and repeat; phases as ``<phase>_p50`` columns."""
    extra = [k for k in ("model", "repeat") if doc["runs"] and k in doc["runs"][0]]
    phases = sorted({p for r in doc["runs"] for p in r.get("breakdown_ms", {})})
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=extra + CSV_KEYS + [f"{p}_p50" for p in phases])
        w.writeheader()
        for r in doc["runs"]:
            row = {**{k: r[k] for k in extra + CSV_KEYS if k in r}, **r["latency_ms"],
                   "errors": sum(r["errors"].values())}  # fmt: skip
            row.update({f"{p}_p50": v["p50"] for p, v in r.get("breakdown_ms", {}).items()})
            w.writerow(row)
    return path


def plot_compare(doc: dict[str, Any], folder: Path) -> Path:
    """``compare.png``: per scenario, B/A ratios of p50 latency and throughput, median with min-max bars."""
    plt = pyplot()
    rows = doc["ratios"]
    labels = [f"{r['scenario']} {r['concurrency'] or r['target_rate']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(rows) + 2), 4.5))
    width = 0.38
    for k, (key, name) in enumerate((("p50_latency_ratio", "p50 latency"), ("throughput_ratio", "throughput"))):
        med = [r[key]["median"] for r in rows]
        lo = [r[key]["median"] - r[key]["min"] for r in rows]
        hi = [r[key]["max"] - r[key]["median"] for r in rows]
        xs = [i + (k - 0.5) * width for i in range(len(rows))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=4, label=f"{name} ({doc['compare']} / {doc['model']})")
        for x, m, top in zip(xs, med, (r[key]["max"] for r in rows), strict=True):
            ax.annotate(f"{m:.2f}x", (x, top), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_xticks(range(len(rows)), labels)
    reps = doc["provenance"].get("repeats")
    ax.set(ylabel="ratio (median, bars: min-max)", title=f"{doc['compare']} vs {doc['model']} on "
           f"{doc['target']}\n{reps} interleaved repeats")  # fmt: skip
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
        xs, ys = [], []
        for item in r.recorder.hist.get_recorded_iterator():
            xs.append(item.value_iterated_to / 1e3)
            ys.append(item.total_count_to_this_value / r.recorder.count)
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
        ax.set(xscale="log", xlabel="requests in flight", ylabel="throughput (req/s)",
               title=f"{title}: throughput vs concurrency")  # fmt: skip
        ax.grid(True, alpha=0.3)
        out.append(save(fig, folder / f"throughput_vs_concurrency{suffix}.png"))
    return out
