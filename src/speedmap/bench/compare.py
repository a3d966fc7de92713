"""Two models on one destination, interleaved: every scenario runs A, B, then B, A, ... for several
repeats, so drift on a shared machine falls on both alike; the ratios B/A come with their spread. With
``early_stop`` a scenario ends after :data:`MIN_REPEATS` once its ranking is settled (:func:`settled`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from typing import Any

from speedmap.bench.clients import run_async
from speedmap.bench.loadgen import RunResult
from speedmap.bench.results import BenchReport, Spread, Target
from speedmap.bench.run import BenchConfig, Live, Note, Runner, plan, provenance, warm_up

MIN_REPEATS = 2  # early stopping never ends a scenario before this many repeats ...
DECISIVE = 1.15  # ... and only when every repeat's ratio is at least this far from 1.0, the same way


def settled(values: list[float], margin: float = DECISIVE) -> bool:
    """Whether repeats so far rank the two models beyond doubt: at least :data:`MIN_REPEATS` of them, and every
    ratio ``margin`` or more on the same side of 1.0 (Fast and Accurate differ 1.5-2.6x on CPUs; a run that
    rates them within 15% is left to all its repeats)."""
    return len(values) >= MIN_REPEATS and (min(values) >= margin or max(values) <= 1 / margin)


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
    early_stop: bool = False,
) -> tuple[BenchReport, list[tuple[str, int, RunResult]]]:
    """``targets``: model id -> target (two of them, A first). Returns the report and the runs as
    ``(model, repeat, run)``. Each run is tried again on its own while UNSTABLE (``cfg.retry_unstable``).
    ``early_stop``: a scenario ends once its p50 latency and throughput ratios are :func:`settled`."""
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
                done: list[tuple[str, int, RunResult]] = []
                for rep in range(repeats):
                    order = [(a, ta), (b, tb)] if rep % 2 == 0 else [(b, tb), (a, ta)]
                    for model, target in order:
                        if progress is not None:
                            progress(f"{model}: {kind}", value, rep + 1, repeats)
                        done.append((model, rep, await runner.run(target, kind, value)))
                    if early_stop and _settled(done, a, b):
                        break
                runs += done
            return warm, runs
        finally:
            runner.close()
            await ta.close()
            await tb.close()

    prov = provenance(ta.name, infos.get(a), images, cfg)
    prov["models"] = infos
    prov["repeats"] = repeats
    prov["early_stop"] = early_stop
    warm, runs = run_async(main())
    prov["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    summaries = [dataclasses.replace(r.summary(), model=m, repeat=rep) for m, rep, r in runs]
    report = BenchReport(ta.name, a, prov, warm, summaries, compare=b, ratios=ratios(runs, a, b))
    return report, runs


def _settled(runs: list[tuple[str, int, RunResult]], a: str, b: str) -> bool:
    """One scenario's repeats so far: both its p50 latency and its throughput ratios :func:`settled`."""
    r = ratios(runs, a, b)
    return bool(r) and settled(r[0]["p50_latency_ratio"]["values"]) and settled(r[0]["throughput_ratio"]["values"])
