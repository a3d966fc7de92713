"""What a benchmark run records: latencies in an HdrHistogram (mergeable across client processes,
losslessly), errors by kind kept out of the latency figures, and the stability verdict."""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import numpy as np
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

    def cdf_ms(self) -> tuple[np.ndarray, np.ndarray]:
        """The latency CDF: each recorded bucket's highest equivalent value (ms) and the fraction of requests at
        or below it."""
        highest, _ = _index_values()
        counts = _counts(self.hist)
        seen = counts > 0
        return highest[seen] / 1e3, np.cumsum(counts)[seen] / max(1, self.count)

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


PERCENTILES = (("50", 50.0), ("90", 90.0), ("95", 95.0), ("99", 99.0), ("999", 99.9))


@cache
def _index_values() -> tuple[np.ndarray, np.ndarray]:
    """Per counts index of our histograms: the highest value equivalent to it (what a percentile reports) and its
    median equivalent value (what the mean and the deviation weigh), by hdrh's own functions, once."""
    h = _histogram()
    values = [h.get_value_from_index(i) for i in range(h.counts_len)]
    highest = np.array([h.get_highest_equivalent_value(v) for v in values], dtype=np.float64)
    median = np.array([h._hdr_median_equiv_value(v) for v in values], dtype=np.float64)
    return highest, median


def _counts(h: HdrHistogram) -> np.ndarray:
    return np.ctypeslib.as_array(h.counts)[: h.counts_len].astype(np.float64)


def _summary(h: HdrHistogram) -> dict[str, float | None]:
    """hdrh's percentiles, min, max, mean and deviation, to the same numbers, from the counts array with numpy:
    hdrh walks its buckets in Python (several 10k steps per figure, seconds for a study's hundreds of runs)."""
    total = h.get_total_count()
    if total == 0:
        return dict.fromkeys(("p50", "p90", "p95", "p99", "p999", "min", "max", "mean", "std"))
    highest, median = _index_values()
    counts = _counts(h)
    cumulative = np.cumsum(counts)
    out: dict[str, float | None] = {}
    for name, pct in PERCENTILES:
        target = max(int(pct * total / 100 + 0.5), 1)  # hdrh's get_target_count_at_percentile
        out[f"p{name}"] = float(highest[np.searchsorted(cumulative, target)]) / 1e3
    mean = float(counts @ median) / total
    std = float(np.sqrt(counts @ (median - mean) ** 2 / total))
    return {**out, "min": h.get_min_value() / 1e3, "max": h.get_max_value() / 1e3, "mean": mean / 1e3, "std": std / 1e3}


def stable(window_rates: list[float], tolerance: float = 0.10, needed: int = 3) -> bool:
    """VALID when some ``needed`` consecutive windows (throughput per window) lie within ``tolerance``
    of each other (max / min - 1); otherwise the run is UNSTABLE."""
    for i in range(len(window_rates) - needed + 1):
        w = window_rates[i : i + needed]
        if min(w) > 0 and max(w) / min(w) - 1 <= tolerance:
            return True
    return False
