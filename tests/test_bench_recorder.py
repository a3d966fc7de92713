"""The benchmark's recorder: percentiles against known distributions, lossless merging, stability."""

from __future__ import annotations

import numpy as np
import pytest

from speedmap.bench.recorder import Recorder, stable


def test_percentiles_of_a_known_distribution_within_half_a_percent() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(np.log(0.020), 0.5, 200_000)  # seconds, median 20 ms
    r = Recorder()
    for v in values:
        r.record(float(v))
    got = r.latency_ms()
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert got[key] == pytest.approx(np.percentile(values, q) * 1e3, rel=0.005), key
    assert got["mean"] == pytest.approx(values.mean() * 1e3, rel=0.005)
    assert got["std"] == pytest.approx(values.std() * 1e3, rel=0.01)
    assert got["max"] == pytest.approx(values.max() * 1e3, rel=0.001)


def test_merging_client_processes_is_lossless() -> None:
    rng = np.random.default_rng(1)
    whole, parts = Recorder(), [Recorder() for _ in range(4)]
    for k, v in enumerate(rng.exponential(0.01, 40_000)):
        whole.record(float(v))
        parts[k % 4].record(float(v))
    parts[2].error("http 503")
    parts[3].error("timeout")
    merged = Recorder()
    merged.merge(parts[0])
    for p in parts[1:]:
        merged.merge(p.encode())  # as sent back from another process
    assert merged.count == whole.count == 40_000
    assert merged.latency_ms() == whole.latency_ms()
    assert dict(merged.errors) == {"http 503": 1, "timeout": 1}


def test_errors_stay_out_of_latency_and_empty_runs_have_no_figures() -> None:
    r = Recorder()
    r.error("connect")
    assert r.count == 0 and r.latency_ms()["p50"] is None


def test_stability_needs_three_consecutive_windows_within_ten_percent() -> None:
    assert stable([100, 104, 97])
    assert stable([50, 80, 100, 101, 99, 60])
    assert not stable([100, 120, 100, 120, 100])
    assert not stable([100, 100])
    assert not stable([0, 0, 0])
