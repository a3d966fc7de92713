"""What a benchmark run records: latencies in an HdrHistogram (mergeable across client processes,
losslessly), errors by kind kept out of the latency figures, and the stability verdict."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3  # 1 us .. 10 min at 3 significant digits


class Recorder:
    """Latencies (seconds in, microseconds inside) and errors of one run."""

    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
        self.errors: Counter[str] = Counter()

    def record(self, seconds: float) -> None:
        self.hist.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    @property
    def count(self) -> int:
        return self.hist.get_total_count()

    def encode(self) -> dict[str, Any]:
        """A picklable, JSON-able form for sending from client processes."""
        return {"hist": self.hist.encode().decode(), "errors": dict(self.errors)}

    def merge(self, other: Recorder | dict[str, Any]) -> None:
        """Add another recorder's counts (or its :meth:`encode` form): exact, bucket by bucket."""
        if isinstance(other, Recorder):
            self.hist.add(other.hist)
            self.errors.update(other.errors)
        else:
            self.hist.decode_and_add(other["hist"].encode())
            self.errors.update(other["errors"])

    def latency_ms(self) -> dict[str, float | None]:
        """p50, p90, p95, p99, p99.9, min, max, mean, std in milliseconds (None when nothing succeeded)."""
        if self.count == 0:
            return dict.fromkeys(("p50", "p90", "p95", "p99", "p999", "min", "max", "mean", "std"))
        h = self.hist
        pct = {f"p{k}": h.get_value_at_percentile(v) / 1e3 for k, v in
               (("50", 50), ("90", 90), ("95", 95), ("99", 99), ("999", 99.9))}  # fmt: skip
        return {**pct, "min": h.get_min_value() / 1e3, "max": h.get_max_value() / 1e3,
                "mean": h.get_mean_value() / 1e3, "std": h.get_stddev() / 1e3}  # fmt: skip


def stable(window_rates: list[float], tolerance: float = 0.10, needed: int = 3) -> bool:
    """VALID when some ``needed`` consecutive windows (throughput per window) lie within ``tolerance``
    of each other (max / min - 1); otherwise the run is UNSTABLE."""
    for i in range(len(window_rates) - needed + 1):
        w = window_rates[i : i + needed]
        if min(w) > 0 and max(w) / min(w) - 1 <= tolerance:
            return True
    return False
