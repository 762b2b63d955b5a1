"""Run statistics: latency percentiles, windowed rates, the summary schema, bounded counters."""

from __future__ import annotations

import math
import random

import pytest

from poolfetch.core.stats import LatencyHistogram, RateWindow, RunStats

CONTRACT_KEYS = {
    "total",
    "ok",
    "failed",
    "skipped",
    "unchanged",
    "status_429",
    "retries",
    "bytes",
    "elapsed_s",
    "requests_per_s",
    "latency_ms",
    "by_status",
}


def _true_percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with ``fraction`` of values at or below."""
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


@pytest.mark.parametrize(
    "values_ms",
    [
        [float(i) for i in range(1, 1001)],  # uniform 1..1000 ms
        [random.Random(7).lognormvariate(3.0, 1.2) for _ in range(20_000)],  # long-tailed
        [0.2] * 900 + [5_000.0] * 100,  # bimodal
    ],
    ids=["uniform", "lognormal", "bimodal"],
)
def test_latency_percentiles_within_five_percent(values_ms):
    histogram = LatencyHistogram()
    for ms in values_ms:
        histogram.add(ms / 1000.0)
    ordered = sorted(values_ms)
    for fraction in (0.5, 0.95, 0.99):
        true = _true_percentile(ordered, fraction)
        assert histogram.percentile(fraction) == pytest.approx(true, rel=0.05)
    assert histogram.count == len(values_ms)


def test_empty_histogram_has_no_percentiles():
    assert LatencyHistogram().percentile(0.5) is None


def test_rate_window_counts_recent_events(clock):
    clock.set(100.0)
    window = RateWindow(clock)
    for _ in range(10):  # 10 events a second for 10 s
        clock.advance(0.5)
        window.add(10)
        clock.advance(0.5)
    assert window.rate() == pytest.approx(10.0)
    clock.advance(2.0)  # two idle seconds: 3 of the last 5 s had events
    assert window.rate() == pytest.approx(30 / 5)
    clock.advance(10.0)
    assert window.rate() == 0.0


def test_rate_window_follows_a_rate_change(clock):
    window = RateWindow(clock)
    for per_second in [5] * 10 + [50] * 10:
        window.add(per_second)
        clock.advance(1.0)
    assert window.rate() == pytest.approx(50.0)


def _stats(clock) -> RunStats:
    return RunStats(workers=4, clock=clock)


def test_summary_has_the_contract_keys(clock):
    stats = _stats(clock)
    summary = stats.summary()
    assert summary.keys() >= CONTRACT_KEYS
    assert set(summary["latency_ms"]) >= {"p50", "p95", "p99"}


def test_summary_counts(clock):
    stats = _stats(clock)
    stats.attempt_finished(503, 0.1, 0)
    stats.attempt_finished(429, 0.1, 0)
    stats.retries += 2
    stats.attempt_finished(200, 0.2, 1000)
    stats.result_written(True, 200, None, "a:80")
    stats.attempt_finished(404, 0.05, 20)
    stats.result_written(False, 404, "HTTP 404", "b:80")
    stats.result_written(True, 200, None, "a:80", skipped=True)
    stats.result_written(True, 304, None, "a:80", unchanged=True)
    stats.result_written(False, None, "line is not valid UTF-8", None)
    clock.advance(2.0)
    summary = stats.summary()
    assert summary["total"] == 5
    assert summary["ok"] == 3
    assert summary["failed"] == 2
    assert summary["skipped"] == 1
    assert summary["unchanged"] == 1
    assert summary["status_429"] == 1
    assert summary["retries"] == 2
    assert summary["bytes"] == 1020
    assert summary["elapsed_s"] == pytest.approx(2.0)
    assert summary["requests_per_s"] == pytest.approx(2.0)  # 4 requests in 2 s
    assert summary["by_status"] == {"200": 2, "304": 1, "404": 1}
    assert summary["latency_ms"]["p50"] == pytest.approx(100.0, rel=0.05)


@pytest.mark.parametrize("n", [0, 1, 37])
def test_total_equals_the_number_of_records(clock, n):
    stats = _stats(clock)
    for i in range(n):
        stats.result_written(i % 2 == 0, 200 if i % 2 == 0 else 500, None, "h:80")
    summary = stats.summary()
    assert summary["total"] == n
    assert summary["ok"] + summary["failed"] == n


def test_error_and_host_counters_stay_bounded(clock):
    stats = _stats(clock)
    for _ in range(50):
        stats.result_written(False, 503, "HTTP 503", "hot:80")
    for i in range(10_000):
        stats.result_written(False, None, f"connection refused #{i}", f"host{i}:80")
    assert len(stats.errors) <= 400
    assert len(stats.failing_hosts) <= 400
    summary = stats.summary()
    assert summary["top_errors"][0] == {"error": "HTTP 503", "count": 50}
    assert summary["top_failing_hosts"][0] == {"host": "hot:80", "failed": 50}
    assert summary["failed"] == 10_050


def test_the_status_line_of_a_shared_run_shows_the_worker_processes_connected():
    from poolfetch.cli.progress import status_line

    stats = RunStats(workers=4, clock=lambda: 0.0)
    assert "worker processes" not in status_line(stats.snapshot())
    assert "worker processes 3" in status_line(stats.snapshot({"worker_processes": 3}))
