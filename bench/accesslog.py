"""Read the server's access log for one client run: what the server saw, not what the client says.

The log format is ``$connection $msec $status $request_time $request_uri`` (nginx; the fallback
server writes the same). The harness notes the log's size before a run and reads only the bytes
written after it, so the runs share one log file without rotating it. From those lines come:
requests, distinct TCP connections, answers by status, URLs that got a 2xx at least once, and
request timestamps of their *start*: ``$msec - $request_time``, the time the answer was logged minus
the time since nginx read the request's first bytes, both with millisecond resolution. Rate limits
bound request starts, so windows are counted on starts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LogSummary:
    """The requests of one run as the server logged them."""

    requests: int = 0
    connections: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    ok_urls: int = 0
    urls_seen: int = 0
    times: list[float] = field(default_factory=list)


def log_offset(path: Path) -> int:
    """Current size of the log: where the next run's lines will start."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def summarize(path: Path, offset: int, *, keep_times: bool = False) -> LogSummary:
    """Summarize the log lines written after ``offset`` (a run's lines)."""
    summary = LogSummary()
    connections: set[int] = set()
    seen: set[str] = set()
    ok: set[str] = set()
    with path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            parts = raw.decode("utf-8", "replace").rstrip("\n").split(" ", 4)
            if len(parts) != 5:
                continue
            conn, msec, status_text, took, uri = parts
            status = int(status_text)
            summary.requests += 1
            summary.by_status[status] += 1
            connections.add(int(conn))
            seen.add(uri)
            if 200 <= status < 300:
                ok.add(uri)
            if keep_times:
                summary.times.append(float(msec) - float(took))
    summary.connections = len(connections)
    summary.urls_seen = len(seen)
    summary.ok_urls = len(ok)
    return summary


def max_in_window(times: list[float], window: float) -> int:
    """Most requests in any interval ``[t, t + window)`` that starts at a request."""
    ordered = sorted(times)
    best = 0
    end = 0
    for start, t in enumerate(ordered):
        end = max(end, start)
        while end < len(ordered) and ordered[end] < t + window:
            end += 1
        best = max(best, end - start)
    return best


def rate_profile(times: list[float], window: float = 1.0) -> dict[str, float]:
    """Mean rate over the run, the busiest windows, and how many requests came in the first
    second (a startup burst shows up there)."""
    if not times:
        return {"mean_rate": 0.0, "max_1s": 0, "max_100ms": 0, "first_1s": 0, "span_s": 0.0}
    ordered = sorted(times)
    span = ordered[-1] - ordered[0]
    first = ordered[0]
    return {
        "mean_rate": (len(ordered) - 1) / span if span > 0 else 0.0,
        "max_1s": max_in_window(ordered, window),
        "max_100ms": max_in_window(ordered, window / 10),
        "first_1s": sum(1 for t in ordered if t < first + window),
        "span_s": span,
    }
