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


@pytest.mark.parametrize("n", [1, 2, 7, 5000])
def test_the_summary_is_hdrhs_own_figures_without_its_python_walk(n: int) -> None:
    """The summary reads the counts with numpy; hdrh's own functions (a Python loop over up to 21k buckets per
    figure, 0.15-0.2 s a run, half of a small study's benchmark time) must give the same numbers."""
    rng = np.random.default_rng(n)
    r = Recorder()
    for v in [*rng.lognormal(np.log(0.02), 1.2, n), 1e-9, 1e4][: n + (2 if n > 2 else 0)]:  # with both clamps
        r.record(float(v))
    h, got = r.hist, r.latency_ms()
    want = {f"p{k}": h.get_value_at_percentile(q) / 1e3 for k, q in (("50", 50), ("90", 90), ("95", 95))}
    want |= {"p99": h.get_value_at_percentile(99) / 1e3, "p999": h.get_value_at_percentile(99.9) / 1e3}
    want |= {"min": h.get_min_value() / 1e3, "max": h.get_max_value() / 1e3, "mean": h.get_mean_value() / 1e3}
    want["std"] = h.get_stddev() / 1e3
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    xs, ys = r.cdf_ms()
    walk = [(i.value_iterated_to / 1e3, i.total_count_to_this_value / r.count) for i in h.get_recorded_iterator()]
    assert xs.tolist() == pytest.approx([x for x, _ in walk]) and ys.tolist() == pytest.approx([y for _, y in walk])


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
