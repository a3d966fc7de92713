"""Two models on one destination, interleaved: every scenario runs A, B, then B, A, ... for several
repeats, so drift on a shared machine falls on both alike; the ratios B/A come with their spread."""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from typing import Any

from speedmap.bench.clients import run_async
from speedmap.bench.loadgen import RunResult
from speedmap.bench.results import BenchReport, Spread, Target
from speedmap.bench.run import BenchConfig, Live, Note, Runner, plan, provenance, warm_up


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def ranking_certain(spread: dict[str, Any] | Spread) -> bool:
    """Whether every repeat ranks the two models alike: the smallest and the largest ratio lie on the same
    side of 1.0 (a ratio of exactly 1.0 ranks neither first)."""
    return (spread if isinstance(spread, Spread) else Spread.from_json(spread)).certain


def ratios(runs: list[tuple[str, int, RunResult]], a: str, b: str) -> list[dict[str, Any]]:
    """Per scenario: B/A of p50 latency, p90 latency and throughput, one value per repeat."""
    out = []
    keys = []
    for _, _, r in runs:
        k = (r.scenario, r.concurrency, r.target_rate)
        if k not in keys:
            keys.append(k)
    for scenario, concurrency, rate in keys:
        pairs: dict[int, dict[str, RunResult]] = {}
        for model, rep, r in runs:
            if (r.scenario, r.concurrency, r.target_rate) == (scenario, concurrency, rate):
                pairs.setdefault(rep, {})[model] = r
        p50, p90, tput = [], [], []
        for pair in pairs.values():
            ra, rb = pair.get(a), pair.get(b)
            if ra is None or rb is None or not ra.recorder.count or not rb.recorder.count:
                continue
            la, lb = ra.recorder.latency_ms(), rb.recorder.latency_ms()
            p50.append(lb["p50"] / la["p50"])  # type: ignore[operator]
            p90.append(lb["p90"] / la["p90"])  # type: ignore[operator]
            tput.append((rb.recorder.count / rb.duration_s) / (ra.recorder.count / ra.duration_s))
        if p50:
            out.append(
                {
                    "scenario": scenario,
                    "concurrency": concurrency,
                    "target_rate": rate,
                    "p50_latency_ratio": spread(p50),
                    "p90_latency_ratio": spread(p90),
                    "throughput_ratio": spread(tput),
                }
            )
    return out


def compare(
    targets: dict[str, Target],
    cfg: BenchConfig,
    infos: dict[str, dict[str, Any] | None],
    images: list[bytes],
    repeats: int = 3,
    progress: Any = None,
    live: Live | None = None,
    note: Note | None = None,
) -> tuple[BenchReport, list[tuple[str, int, RunResult]]]:
    """``targets``: model id -> target (two of them, A first). Returns the report and the runs as
    ``(model, repeat, run)``. Each run is tried again on its own while UNSTABLE (``cfg.retry_unstable``)."""
    (a, ta), (b, tb) = targets.items()

    async def main() -> tuple[dict[str, Any], list[tuple[str, int, RunResult]]]:
        runner = Runner(cfg, live, note)
        try:
            warm = {
                a: await warm_up(ta, cfg.warmup, cfg.warmup_seconds),
                b: await warm_up(tb, cfg.warmup, cfg.warmup_seconds),
            }
            runs = []
            for kind, value in plan(cfg):
                for rep in range(repeats):
                    order = [(a, ta), (b, tb)] if rep % 2 == 0 else [(b, tb), (a, ta)]
                    for model, target in order:
                        if progress is not None:
                            progress(f"{model}: {kind}", value, rep + 1, repeats)
                        runs.append((model, rep, await runner.run(target, kind, value)))
            return warm, runs
        finally:
            runner.close()
            await ta.close()
            await tb.close()

    prov = provenance(ta.name, infos.get(a), images, cfg)
    prov["models"] = infos
    prov["repeats"] = repeats
    warm, runs = run_async(main())
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summaries = [dataclasses.replace(r.summary(), model=m, repeat=rep) for m, rep, r in runs]
    report = BenchReport(ta.name, a, prov, warm, summaries, compare=b, ratios=ratios(runs, a, b))
    return report, runs
