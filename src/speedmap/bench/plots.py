"""Benchmark outputs beside the JSON: a CSV row per run, the latency CDF per run, throughput vs concurrency."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from speedmap.bench.loadgen import RunResult

CSV_KEYS = ["scenario", "concurrency", "target_rate", "requests", "errors", "duration_s", "throughput_rps",
            "p50", "p90", "p95", "p99", "p999", "min", "max", "mean", "std", "valid"]  # fmt: skip


def write_csv(doc: dict[str, Any], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_KEYS)
        w.writeheader()
        for r in doc["runs"]:
            w.writerow({**{k: r[k] for k in CSV_KEYS if k in r}, **r["latency_ms"],
                        "errors": sum(r["errors"].values())})  # fmt: skip
    return path


def plot_runs(runs: list[RunResult], title: str, folder: Path) -> list[Path]:
    """``latency_cdf.png`` (one curve per run, from the HdrHistogram) and, for sweeps,
    ``throughput_vs_concurrency.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    out.append(folder / "latency_cdf.png")
    fig.savefig(out[-1], dpi=110)
    plt.close(fig)
    sweep = [r for r in runs if r.concurrency]
    if len(sweep) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r.concurrency for r in sweep], [r.recorder.count / r.duration_s for r in sweep], marker="o")
        ax.set(xscale="log", xlabel="requests in flight", ylabel="throughput (req/s)",
               title=f"{title}: throughput vs concurrency")  # fmt: skip
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        out.append(folder / "throughput_vs_concurrency.png")
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out
