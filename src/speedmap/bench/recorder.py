"""What a benchmark run records: latencies in an HdrHistogram (mergeable across client processes,
losslessly), errors by kind kept out of the latency figures, and the stability verdict."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3  # 1 us .. 10 min at 3 significant digits


class Recorder:
    """Latencies (seconds in, microseconds inside), the breakdown of each latency into phases where the
    target reports them (client encode, network + queue, server, client decode), and errors of one run."""

    def __init__(self) -> None:
        self.hist = _histogram()
        self.phases: dict[str, HdrHistogram] = {}
        self.errors: Counter[str] = Counter()

    def record(self, seconds: float) -> None:
        self.hist.record_value(_us(seconds))

    def phase(self, name: str, seconds: float) -> None:
        h = self.phases.get(name)
        if h is None:
            h = self.phases[name] = _histogram()
        h.record_value(_us(seconds))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    @property
    def count(self) -> int:
        return self.hist.get_total_count()

    def encode(self) -> dict[str, Any]:
        """A picklable, JSON-able form for sending from client processes."""
        return {
            "hist": self.hist.encode().decode(),
            "errors": dict(self.errors),
            "phases": {k: h.encode().decode() for k, h in self.phases.items()},
        }

    def merge(self, other: Recorder | dict[str, Any]) -> None:
        """Add another recorder's counts (or its :meth:`encode` form): exact, bucket by bucket."""
        if isinstance(other, Recorder):
            self.hist.add(other.hist)
            self.errors.update(other.errors)
            for k, h in other.phases.items():
                self.phases.setdefault(k, _histogram()).add(h)
        else:
            self.hist.decode_and_add(other["hist"].encode())
            self.errors.update(other["errors"])
            for k, enc in other.get("phases", {}).items():
                self.phases.setdefault(k, _histogram()).decode_and_add(enc.encode())

    def latency_ms(self) -> dict[str, float | None]:
        """p50, p90, p95, p99, p99.9, min, max, mean, std in milliseconds (None when nothing succeeded)."""
        return _summary(self.hist)

    def breakdown_ms(self) -> dict[str, dict[str, float | None]]:
        """Per phase: p50, p90, p99 and mean in milliseconds."""
        return {
            k: {s: v for s, v in _summary(h).items() if s in ("p50", "p90", "p99", "mean")}
            for k, h in self.phases.items()
        }


def _histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _us(seconds: float) -> int:
    return min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6)))


def _summary(h: HdrHistogram) -> dict[str, float | None]:
    if h.get_total_count() == 0:
        return dict.fromkeys(("p50", "p90", "p95", "p99", "p999", "min", "max", "mean", "std"))
    pct = {
        f"p{k}": h.get_value_at_percentile(v) / 1e3
        for k, v in (("50", 50), ("90", 90), ("95", 95), ("99", 99), ("999", 99.9))
    }
    return {
        **pct,
        "min": h.get_min_value() / 1e3,
        "max": h.get_max_value() / 1e3,
        "mean": h.get_mean_value() / 1e3,
        "std": h.get_stddev() / 1e3,
    }


def stable(window_rates: list[float], tolerance: float = 0.10, needed: int = 3) -> bool:
    """VALID when some ``needed`` consecutive windows (throughput per window) lie within ``tolerance``
    of each other (max / min - 1); otherwise the run is UNSTABLE."""
    for i in range(len(window_rates) - needed + 1):
        w = window_rates[i : i + needed]
        if min(w) > 0 and max(w) / min(w) - 1 <= tolerance:
            return True
    return False
