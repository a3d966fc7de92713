"""UNSTABLE runs tried again at twice, then four times the duration, through the real runner, load
generator, ``benchmark()`` and ``compare()``, on in-process targets whose service time changes while a
run goes; and the typed results (JSON round trip, older documents, ranking certainty)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time

import pytest
from rich.console import Console

import speedmap.cli.bench as cli_bench
from speedmap.bench.compare import Spread, compare, ranking_certain
from speedmap.bench.results import BenchReport, BenchRun, Target
from speedmap.bench.run import BenchConfig, benchmark


@pytest.fixture(autouse=True)
def no_contention_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count the UNSTABLE tries; on a busy test machine a contended try would add one."""
    monkeypatch.setattr("speedmap.bench.run.CONTENDED_RETRIES", 0)


class Ramp:
    """A server that slows down under load: from the start of each run (``resize``, called before every
    try) its service time doubles ``doublings`` times a second for ``settle`` seconds, then holds."""

    spec = None
    load_ms = None

    def __init__(self, name: str, base: float, doublings: float = 1.0, settle: float = math.inf) -> None:
        self.name, self.base, self.doublings, self.settle = name, base, doublings, settle
        self.t0 = time.perf_counter()

    async def resize(self, concurrency: int) -> None:
        self.t0 = time.perf_counter()

    async def send(self, i: int) -> dict[str, float] | None:
        t = min(time.perf_counter() - self.t0, self.settle)
        await asyncio.sleep(self.base * 2 ** (self.doublings * t))
        return None

    async def close(self) -> None:
        pass


def _tries(run: BenchRun) -> list[tuple[float, bool]]:
    for a in run.attempts:
        assert a["duration_s"] >= a["min_duration_s"]  # each try lasted at least what it asked for
    return [(a["min_duration_s"], a["valid"]) for a in run.attempts]


def test_unstable_run_is_tried_again_at_twice_then_four_times_the_duration() -> None:
    """Service time 5 -> 20 ms over the first second of every run, then steady: a 0.8 s run and a 1.6 s
    run are mostly ramp (UNSTABLE); the 3.2 s run has three steady windows (VALID) and is the result."""
    target: Target = Ramp("settling", base=0.005, doublings=2.0, settle=1.0)
    cfg = BenchConfig("concurrency", [4], duration=0.8, requests=1, warmup=2)
    notes: list[str] = []
    report, runs = benchmark(target, cfg, None, [b""], note=notes.append)
    (run,) = report.runs
    assert _tries(run) == [(0.8, False), (1.6, False), (3.2, True)]
    assert run.valid and run.tries == 3 and runs[0].valid
    assert run.duration_s == run.attempts[-1]["duration_s"] >= 3.2  # the last try is the result
    assert len(notes) == 2 and "UNSTABLE" in notes[0] and "1.6 s" in notes[0] and "3.2 s" in notes[1]
    assert cli_bench._valid(run) == "VALID after 3 tries"
    assert report.provenance["config"]["retry_unstable"] is True


def test_compare_retries_each_run_on_its_own_and_a_stable_run_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A steady 10 ms model against one that keeps slowing down (5 ms doubling every second): the
    steady run is tried once; the other is tried at 0.8, 1.6 and 3.2 s and stays UNSTABLE."""
    targets: dict[str, Target] = {"steady": Ramp("ramp", base=0.010, settle=0.0), "worsening": Ramp("ramp", 0.005)}
    cfg = BenchConfig("concurrency", [4], duration=0.8, requests=1, warmup=2)
    report, pairs = compare(targets, cfg, {"steady": None, "worsening": None}, [b""], repeats=1)
    steady, worse = report.runs
    assert (steady.model, worse.model) == ("steady", "worsening")
    assert _tries(steady) == [(0.8, True)] and steady.tries == 1
    assert _tries(worse) == [(0.8, False), (1.6, False), (3.2, False)]
    assert not worse.valid and worse.duration_s >= 3.2 and [r.valid for _, _, r in pairs] == [True, False]
    assert report.loaded("worsening") is worse and report.loaded() is steady and report.single() is None
    assert [x["concurrency"] for x in report.ratios] == [4]

    # the JSON keeps the older field names, gains ``attempts``, and reads back to the same report
    doc = json.loads(json.dumps(report.to_json()))
    assert list(doc) == ["target", "model", "compare", "provenance", "warmup", "runs", "ratios"]
    assert doc["runs"][1]["attempts"][2]["valid"] is False and doc["runs"][1]["repeat"] == 0
    assert BenchReport.from_json(doc) == report

    # the table says so
    console = Console(file=io.StringIO(), width=200)
    monkeypatch.setattr(cli_bench, "out", console)
    cli_bench._print_runs(report, "t")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "UNSTABLE after 3 tries" in text and text.count("after") == 1


def test_older_documents_and_ranking_certainty() -> None:
    old = {
        "scenario": "single",
        "concurrency": 1,
        "target_rate": None,
        "requests": 20,  # a run before `attempts`
        "errors": {"http 503": 2},
        "duration_s": 1.0,
        "throughput_rps": 18.0,
        "latency_ms": {"p50": 10.0, "p90": 12.0},
        "valid": True,
    }
    run = BenchRun.from_json(old)
    assert run.attempts == [] and run.tries == 1 and run.error_count == 2 and (run.p50_ms, run.p90_ms) == (10, 12)
    assert "attempts" in run.to_json() and "model" not in run.to_json()
    report = BenchReport.from_json(
        {
            "target": "local",
            "model": "m",
            "provenance": {},
            "warmup": {},
            "runs": [old, {**old, "scenario": "concurrency", "concurrency": 4}],
        }
    )
    assert report.single() is report.runs[0] and report.loaded() is report.runs[1]
    assert ranking_certain({"median": 1.2, "min": 1.05, "max": 1.4, "values": [1.05, 1.2, 1.4]})
    assert ranking_certain(Spread(0.8, 0.7, 0.95, [0.7, 0.8, 0.95]))
    assert not ranking_certain({"median": 1.1, "min": 0.9, "max": 1.3, "values": [0.9, 1.1, 1.3]})
    assert not Spread(1.0, 1.0, 1.2, [1.0, 1.1, 1.2]).certain


def test_compare_stops_a_scenario_once_its_ranking_is_settled() -> None:
    """5 ms against 15 ms: settled after two repeats of each scenario instead of five; 10 ms against 10.5 ms
    (within 15%) runs every repeat. Without ``early_stop`` every repeat runs."""
    from speedmap.bench.compare import settled

    assert settled([2.0, 2.6]) and settled([0.5, 0.6]) and not settled([2.0]) and not settled([1.1, 2.0])
    assert not settled([2.0, 0.5])
    # one try per run: the retries have their own tests, and 0.3-s runs of these targets are often UNSTABLE
    cfg = BenchConfig("concurrency", [1, 4], duration=0.3, requests=1, warmup=2, retry_unstable=False)
    fast_slow: dict[str, Target] = {"a": Ramp("r", 0.005, settle=0.0), "b": Ramp("r", 0.015, settle=0.0)}
    report, _ = compare(fast_slow, cfg, {"a": None, "b": None}, [b""], repeats=5, early_stop=True)
    assert [len(r["p50_latency_ratio"]["values"]) for r in report.ratios] == [2, 2]
    assert all(r["p50_latency_ratio"]["min"] > 1.15 for r in report.ratios)
    assert report.provenance["early_stop"] is True
    close: dict[str, Target] = {"a": Ramp("r", 0.010, settle=0.0), "b": Ramp("r", 0.0105, settle=0.0)}
    report, _ = compare(close, cfg, {"a": None, "b": None}, [b""], repeats=3, early_stop=True)
    assert [len(r["p50_latency_ratio"]["values"]) for r in report.ratios] == [3, 3]
    report, _ = compare(fast_slow, cfg, {"a": None, "b": None}, [b""], repeats=3)
    assert [len(r["p50_latency_ratio"]["values"]) for r in report.ratios] == [3, 3]
