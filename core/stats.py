"""Run statistics: counters the main thread bumps, and immutable snapshots for the display.

Workers never touch these: they hand back values, the main thread counts. The latency
histogram has fixed log-spaced buckets (memory does not grow with the run); percentiles are
read off its upper bucket bounds (within 5 %). Throughput over a sliding window comes from a
ring of per-second counters.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poolfetch.core.models import FetchResult

_LATENCY_BASE_MS = 0.05
_LATENCY_GROWTH = 1.05
_LATENCY_BUCKETS = 400  # 0.05 ms … about 15 minutes
_WINDOW_S = 5
_TOP_KEEP = 200
#: Hosts listed in the summary's ``hosts`` (the busiest by requests sent).
SUMMARY_HOSTS = 5


class LatencyHistogram:
    """Fixed log-spaced buckets of attempt durations."""

    __slots__ = ("_counts", "count")

    def __init__(self) -> None:
        self._counts = [0] * _LATENCY_BUCKETS
        self.count = 0

    def add(self, seconds: float) -> None:
        ms = seconds * 1000.0
        if ms <= _LATENCY_BASE_MS:
            index = 0
        else:
            index = int(math.log(ms / _LATENCY_BASE_MS) / math.log(_LATENCY_GROWTH)) + 1
        self._counts[min(index, _LATENCY_BUCKETS - 1)] += 1
        self.count += 1

    def percentile(self, fraction: float) -> float | None:
        """Latency in ms at ``fraction`` (0..1), as the bucket's upper bound; None if empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return round(_LATENCY_BASE_MS * _LATENCY_GROWTH**index, 3)
        return None


class RateWindow:
    """Events per second over the last few whole seconds (a ring of per-second counters)."""

    __slots__ = ("_clock", "_counts", "_second", "_start")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counts = [0] * (_WINDOW_S + 1)
        self._start = clock()
        self._second = int(self._start)

    def _advance(self, now: float) -> int:
        second = int(now)
        if second - self._second > _WINDOW_S:
            self._counts = [0] * (_WINDOW_S + 1)
        else:
            for s in range(self._second + 1, second + 1):
                self._counts[s % len(self._counts)] = 0
        self._second = max(self._second, second)
        return second

    def add(self, n: int = 1) -> None:
        second = self._advance(self._clock())
        self._counts[second % len(self._counts)] += n

    def rate(self) -> float:
        now = self._clock()
        second = self._advance(now)
        current = self._counts[second % len(self._counts)]
        full = sum(self._counts) - current
        # early in a run the window is only as long as the run (at least half a second)
        span = min(_WINDOW_S + (now - second), max(now - self._start, 0.5))
        return (full + current) / span


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """An immutable copy of the counters, pushed to the display a few times a second."""

    elapsed: float
    total: int | None
    done: int
    ok: int
    failed: int
    skipped: int
    unchanged: int
    in_flight: int
    workers: int
    requests: int
    retries: int
    status_429: int
    bytes: int
    classes: dict[str, int]
    recent_rps: float
    recent_bps: float
    latency_ms: dict[str, float | None]
    waiting_on: str | None
    paused: tuple[tuple[str, float], ...] = ()
    throttled: tuple[tuple[str, float], ...] = ()
    global_qps: float | None = None
    #: Hosts with a learned in-flight limit (adaptive concurrency), and that limit.
    concurrency: tuple[tuple[str, int], ...] = ()
    #: Worker processes connected to a shared run (None: a local run).
    worker_processes: int | None = None

    @property
    def overall_rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class RunStats:
    """Counters of one run; written by the main thread only."""

    workers: int
    clock: Callable[[], float] = time.monotonic
    total: int | None = None
    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    unchanged: int = 0
    in_flight: int = 0
    requests: int = 0
    retries: int = 0
    status_429: int = 0
    bytes: int = 0
    sessions: int = 0
    processes: int = 1
    by_status: Counter[str] = field(default_factory=Counter)
    #: Records by request method (``by_method`` in the summary).
    by_method: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failing_hosts: Counter[str] = field(default_factory=Counter)
    host_requests: Counter[str] = field(default_factory=Counter)
    wait_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    waiting_on: str | None = None
    #: Worker processes connected to a shared run (None: a local run).
    worker_processes: int | None = None
    interrupted: str | None = None
    started: float = 0.0
    #: The run's rate limits as given (``rates.describe_rates``), for the summary.
    rates: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.latency = LatencyHistogram()
        self.request_window = RateWindow(self.clock)
        self.byte_window = RateWindow(self.clock)

    def attempt_finished(self, status: int | None, seconds: float, size: int) -> None:
        """One request is over (any outcome)."""
        self.requests += 1
        self.latency.add(seconds)
        self.request_window.add()
        if size:
            self.bytes += size
            self.byte_window.add(size)
        if status is None:
            self.classes["errors"] += 1
        else:
            self.classes[f"{status // 100}xx"] += 1
            if status == 429:
                self.status_429 += 1

    def host_attempt(self, host: str) -> None:
        """One request to ``host`` is over (for the busiest hosts of the summary)."""
        _bump_bounded(self.host_requests, host)

    def result_written(
        self,
        ok: bool,
        status: int | None,
        error: str | None,
        host: str | None,
        skipped: bool = False,
        unchanged: bool = False,
    ) -> None:
        """One record went out."""
        self.done += 1
        if skipped:
            self.skipped += 1
        if unchanged:
            self.unchanged += 1
        if status is not None:
            self.by_status[str(status)] += 1
        if ok:
            self.ok += 1
            return
        self.failed += 1
        if error:
            _bump_bounded(self.errors, error)
        if host:
            _bump_bounded(self.failing_hosts, host)

    def record_written(self, result: FetchResult) -> None:
        """Count a record as it goes out."""
        if result.method is not None:
            _bump_bounded(self.by_method, result.method)
        self.result_written(
            result.ok,
            result.status,
            result.error,
            result.host,
            skipped=result.skipped is not None,
            unchanged=result.unchanged,
        )

    def snapshot(self, extra: dict[str, Any] | None = None) -> StatsSnapshot:
        elapsed = self.clock() - self.started
        return StatsSnapshot(
            elapsed=elapsed,
            total=self.total,
            done=self.done,
            ok=self.ok,
            failed=self.failed,
            skipped=self.skipped,
            unchanged=self.unchanged,
            in_flight=self.in_flight,
            workers=self.workers,
            requests=self.requests,
            retries=self.retries,
            status_429=self.status_429,
            bytes=self.bytes,
            classes=dict(self.classes),
            recent_rps=self.request_window.rate(),
            recent_bps=self.byte_window.rate(),
            latency_ms=self.latency_summary(),
            waiting_on=self.waiting_on,
            **{"worker_processes": self.worker_processes, **(extra or {})},
        )

    def latency_summary(self) -> dict[str, float | None]:
        return {
            "p50": self.latency.percentile(0.50),
            "p95": self.latency.percentile(0.95),
            "p99": self.latency.percentile(0.99),
        }

    def busiest_hosts(
        self,
        rates: dict[str, float] | None = None,
        concurrency: dict[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """The summary's ``hosts``: the busiest few, each with the adaptive limits learned
        for it (null: none learned, the host ran at the configured limits)."""
        rates, concurrency = rates or {}, concurrency or {}
        return [
            {
                "host": host,
                "requests": n,
                "rate": round(rates[host], 2) if host in rates else None,
                "concurrency": concurrency.get(host),
            }
            for host, n in self.host_requests.most_common(SUMMARY_HOSTS)
        ]

    def summary(self, hosts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The end-of-run summary (``--summary-json`` schema, documented in README);
        ``hosts`` as ``busiest_hosts`` made it (default: without learned limits)."""
        elapsed = self.clock() - self.started
        return {
            "total": self.done,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "unchanged": self.unchanged,
            "status_429": self.status_429,
            "retries": self.retries,
            "requests": self.requests,
            "bytes": self.bytes,
            "elapsed_s": round(elapsed, 3),
            "requests_per_s": round(self.requests / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": self.latency_summary(),
            "by_status": dict(sorted(self.by_status.items())),
            "by_class": dict(sorted(self.classes.items())),
            "by_method": dict(sorted(self.by_method.items())),
            "wait_s": {k: round(v, 3) for k, v in sorted(self.wait_s.items())},
            "sessions": self.sessions,
            "workers": self.workers,
            "processes": self.processes,
            "top_failing_hosts": [
                {"host": h, "failed": n} for h, n in self.failing_hosts.most_common(5)
            ],
            "top_errors": [{"error": e, "count": n} for e, n in self.errors.most_common(5)],
            "interrupted": self.interrupted,
            "hosts": self.busiest_hosts() if hosts is None else hosts,
            "rates": self.rates,
        }


def _bump_bounded(counter: Counter[str], key: str) -> None:
    """Count ``key`` but keep at most a few hundred distinct keys (the most common ones)."""
    counter[key] += 1
    if len(counter) > 2 * _TOP_KEEP:
        for rare, _ in counter.most_common()[_TOP_KEEP:]:
            del counter[rare]
