"""What a benchmark is run on and what it returns, typed: the :class:`Target` protocol every destination
implements, one run's figures (:class:`BenchRun`) and one benchmark document (:class:`BenchReport`).

The JSON written by ``speedmap bench --json`` is ``BenchReport.to_json()``; its field names are those of
the documents written before these classes existed, and ``from_json`` reads those older documents too
(fields added since, such as ``attempts`` and ``other_cpu_share``, take their defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from speedmap.cpustat import CONTENDED_SHARE

Phases = dict[str, float]  # seconds per phase of one request, where the target can tell them


@dataclass(frozen=True)
class Spread:
    """One ratio over interleaved repeats: median, min, max and the values."""

    median: float
    min: float
    max: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        import statistics

        return cls(statistics.median(values), min(values), max(values), list(values))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Spread:
        return cls(doc["median"], doc["min"], doc["max"], list(doc.get("values") or []))

    @property
    def certain(self) -> bool:
        """Every repeat ranks the two alike: min and max on the same side of 1.0 (exactly 1.0 ranks neither)."""
        return (self.min > 1.0 and self.max > 1.0) or (self.min < 1.0 and self.max < 1.0)


class Target(Protocol):
    """Where requests go. ``send(i)`` performs request ``i`` (image ``i mod n``), raises on failure and
    returns the request's phases in seconds where it can tell them (None where it cannot)."""

    name: str  # as reports show it: "local", "local-cuda", the server's URL, "browser"
    # How client processes rebuild the target (keyword arguments of HttpTarget); None: the target runs in
    # this process only (the in-process engine), so ``--clients N`` does not apply to it.
    spec: dict[str, Any] | None
    load_ms: float | None  # model load time, when the target loaded the model itself

    async def send(self, i: int) -> Phases | None: ...

    async def resize(self, concurrency: int) -> None:
        """Make ready for ``concurrency`` requests in flight (thread pool, keep-alive pool)."""
        ...

    async def close(self) -> None: ...


@dataclass
class BenchRun:
    """One run's figures, as the JSON document holds them. Latencies in ms (None when no request
    succeeded); ``valid``: some three consecutive windows' throughputs agree within 10%."""

    scenario: str  # single | concurrency | rate | offline
    concurrency: int | None  # requests in flight (closed loop); None for rate
    target_rate: float | None  # requests per second (open loop); None otherwise
    requests: int  # sent: succeeded + failed
    errors: dict[str, int]  # failures by kind ("http 503", "TimeoutError", ...)
    duration_s: float  # measured
    throughput_rps: float  # successful requests per second
    latency_ms: dict[str, float | None]  # p50 p90 p95 p99 p999 min max mean std
    valid: bool
    window_rps: list[float]  # successful requests per second in each full window
    late_sends: int  # open loop: sends more than 10 ms behind schedule
    breakdown_ms: dict[str, dict[str, float | None]]  # phase -> p50 p90 p99 mean
    client: dict[str, Any]  # {"processes": n, "cpu_per_process": [share of one core, ...]}
    warnings: list[str]
    model: str | None = None  # with --compare: whose run
    repeat: int | None = None  # with --compare: the interleaved repeat, from 0
    # Every try of this run, the last being the one reported: [{"duration_s" (measured), "min_duration_s"
    # (asked for), "valid"}]; an UNSTABLE try is repeated with twice, then four times the duration.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The share of the machine's CPU that other processes took during the (last) try: not this process,
    # not what it started (the server, client processes, the browser); None where /proc cannot tell.
    other_cpu_share: float | None = None

    @property
    def contended(self) -> bool:
        """Others took over :data:`CONTENDED_SHARE` of the CPU: the times are suspect."""
        return self.other_cpu_share is not None and self.other_cpu_share > CONTENDED_SHARE

    @property
    def p50_ms(self) -> float | None:
        return self.latency_ms.get("p50")

    @property
    def p90_ms(self) -> float | None:
        return self.latency_ms.get("p90")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def tries(self) -> int:
        """How many times the run was tried (1 for documents without ``attempts``)."""
        return max(1, len(self.attempts))

    @property
    def label(self) -> str:
        """``single 1``, ``concurrency 16``, ``rate 20``: the scenario and its in-flight count or rate."""
        return f"{self.scenario} {self.concurrency or self.target_rate}"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "scenario": self.scenario,
            "concurrency": self.concurrency,
            "target_rate": self.target_rate,
            "requests": self.requests,
            "errors": dict(self.errors),
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "latency_ms": dict(self.latency_ms),
            "valid": self.valid,
            "window_rps": list(self.window_rps),
            "late_sends": self.late_sends,
            "breakdown_ms": self.breakdown_ms,
            "client": self.client,
            "warnings": list(self.warnings),
            "other_cpu_share": self.other_cpu_share,
        }
        if self.model is not None or self.repeat is not None:
            doc["model"], doc["repeat"] = self.model, self.repeat
        doc["attempts"] = [dict(a) for a in self.attempts]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BenchRun:
        return cls(
            scenario=doc["scenario"],
            concurrency=doc.get("concurrency"),
            target_rate=doc.get("target_rate"),
            requests=doc["requests"],
            errors=dict(doc.get("errors") or {}),
            duration_s=doc["duration_s"],
            throughput_rps=doc["throughput_rps"],
            latency_ms=dict(doc["latency_ms"]),
            valid=doc["valid"],
            window_rps=list(doc.get("window_rps") or []),
            late_sends=doc.get("late_sends", 0),
            breakdown_ms=dict(doc.get("breakdown_ms") or {}),
            client=dict(doc.get("client") or {"processes": 1, "cpu_per_process": []}),
            warnings=list(doc.get("warnings") or []),
            model=doc.get("model"),
            repeat=doc.get("repeat"),
            attempts=[dict(a) for a in doc.get("attempts") or []],
            other_cpu_share=doc.get("other_cpu_share"),
        )


@dataclass
class BenchReport:
    """One benchmark document: a model (and with ``--compare`` a second one, interleaved) on a target.
    ``warmup`` is the warm-up record (cold first request, model load ...), keyed by model id with
    ``--compare``; ``ratios`` (``--compare``) holds per scenario the B/A ratios with their spread, as
    :func:`speedmap.bench.compare.ratios` writes them."""

    target: str
    model: str | None
    provenance: dict[str, Any]
    warmup: dict[str, Any]
    runs: list[BenchRun]
    compare: str | None = None  # the second model with --compare
    ratios: list[dict[str, Any]] = field(default_factory=list)

    def _of(self, model: str | None) -> list[BenchRun]:
        if self.compare is None:
            return self.runs
        want = self.model if model is None else model
        return [r for r in self.runs if r.model == want]

    def single(self, model: str | None = None) -> BenchRun | None:
        """The ``single`` scenario run, None without one. With ``--compare``: ``model``'s (default: the
        report's first model), and of its repeats the last."""
        found = [r for r in self._of(model) if r.scenario == "single"]
        return found[-1] if found else None

    def loaded(self, model: str | None = None) -> BenchRun | None:
        """The first run of the plan that is not ``single`` (the first concurrency level above 1, the
        rate, offline), None without one. With ``--compare``: ``model``'s (default: the report's first
        model), and of its repeats of that scenario the last."""
        runs = [r for r in self._of(model) if r.scenario != "single"]
        if not runs:
            return None
        first = runs[0]
        same = [
            r
            for r in runs
            if (r.scenario, r.concurrency, r.target_rate) == (first.scenario, first.concurrency, first.target_rate)
        ]
        return same[-1]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"target": self.target, "model": self.model}
        if self.compare is not None:
            doc["compare"] = self.compare
        doc.update(provenance=self.provenance, warmup=self.warmup, runs=[r.to_json() for r in self.runs])
        if self.compare is not None:
            doc["ratios"] = self.ratios
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BenchReport:
        return cls(
            target=doc["target"],
            model=doc.get("model"),
            provenance=dict(doc.get("provenance") or {}),
            warmup=dict(doc.get("warmup") or {}),
            runs=[BenchRun.from_json(r) for r in doc["runs"]],
            compare=doc.get("compare"),
            ratios=list(doc.get("ratios") or []),
        )
