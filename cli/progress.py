"""The displays: a rich live view on a terminal, plain lines elsewhere, and the summary.

The only module that imports rich. The engine pushes immutable snapshots from its main thread;
rich's own refresh thread renders the latest one, so the display costs the workers nothing.
Without a terminal nothing has ANSI escapes; cron gets one summary line (or nothing with -q).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from poolfetch.core.report import NullReporter, Reporter
from poolfetch.core.stats import StatsSnapshot

PLAIN_INTERVAL_S = 5.0
_WAIT_REASONS = {
    "global": "global --qps",
    "host-rate": "per-host rate",
    "paused": "Retry-After pause",
    "connections": "per-host connections",
}


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


def choose_reporter(progress: bool | None, quiet: bool) -> Reporter:
    """The display for this run: ``-q`` nothing; live on a terminal; plain lines otherwise."""
    if quiet:
        return NullReporter()
    terminal = stderr_is_terminal()
    # markup off: error texts come from servers and must be shown as they are, never parsed
    console = Console(stderr=True, force_terminal=terminal or None, highlight=False, markup=False)
    show_progress = terminal if progress is None else progress
    if show_progress and terminal:
        return LiveReporter(console)
    if show_progress:
        return PlainReporter(console, status_lines=True)
    return PlainReporter(console, status_lines=False, rich_summary=terminal)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _eta(s: StatsSnapshot) -> str:
    if not s.total or s.done == 0 or s.elapsed <= 0:
        return "-"
    remaining = max(0, s.total - s.done) * s.elapsed / s.done
    return time.strftime("%H:%M:%S", time.gmtime(remaining))


def status_line(s: StatsSnapshot) -> str:
    """One plain line of progress (also the headline of the live view)."""
    total = f"/{s.total}" if s.total is not None else ""
    return (
        f"{s.done}{total} done, {s.ok} ok, {s.failed} failed; "
        f"{s.recent_rps:.1f} req/s now, {s.overall_rps:.1f} overall, "
        f"{_size(s.recent_bps)}/s; in flight {s.in_flight}/{s.workers}; "
        f"429s {s.status_429}, retries {s.retries}"
    )


def waiting_text(s: StatsSnapshot) -> str:
    """What the run is waiting on: the limit in force, paused and throttled hosts."""
    parts: list[str] = []
    if s.waiting_on:
        parts.append("waiting on " + _WAIT_REASONS.get(s.waiting_on, s.waiting_on))
    if s.global_qps is not None:
        parts.append(f"global limit {s.global_qps:g}/s")
    if s.paused:
        shown = ", ".join(f"{h} {left:.1f}s" for h, left in sorted(s.paused)[:3])
        more = f" +{len(s.paused) - 3}" if len(s.paused) > 3 else ""
        parts.append(f"paused: {shown}{more}")
    if s.throttled:
        shown = ", ".join(f"{h} {rate:.1f}/s" for h, rate in sorted(s.throttled)[:3])
        more = f" +{len(s.throttled) - 3}" if len(s.throttled) > 3 else ""
        parts.append(f"throttled: {shown}{more}")
    return " · ".join(parts)


class LiveReporter:
    """A rich live view on stderr, redrawn 4 times a second from the latest snapshot."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._snapshot: StatsSnapshot | None = None
        self._total: int | None = None
        self._live = Live(
            get_renderable=self._render, console=console, refresh_per_second=4, transient=True
        )

    def start(self, total: int | None) -> None:
        self._total = total
        self._live.start()

    def set_total(self, total: int) -> None:
        self._total = total

    def update(self, snapshot: StatsSnapshot) -> None:
        self._snapshot = snapshot

    def finish(self, snapshot: StatsSnapshot, summary: dict[str, Any]) -> None:
        self._snapshot = snapshot
        self._live.stop()
        self._console.print(summary_table(summary))

    def _render(self) -> RenderableType:
        s = self._snapshot
        if s is None:
            return Text("starting…")
        total = s.total if s.total is not None else self._total
        grid = Table.grid(padding=(0, 1))
        bar = ProgressBar(total=float(total) if total else None, completed=float(s.done), width=40)
        percent = f"{100 * s.done / total:5.1f}%" if total else ""
        grid.add_row(bar, Text(f"{s.done}/{total if total else '?'} {percent} ETA {_eta(s)}"))
        classes = s.classes
        lines: list[RenderableType] = [
            grid,
            Text(
                f"throughput {s.recent_rps:.1f} req/s (5 s) · {s.overall_rps:.1f} overall · "
                f"{_size(s.recent_bps)}/s · in flight {s.in_flight} · "
                f"workers busy {s.in_flight}/{s.workers}"
            ),
            Text(
                f"2xx {classes.get('2xx', 0)} · 3xx {classes.get('3xx', 0)} · "
                f"4xx {classes.get('4xx', 0)} · 5xx {classes.get('5xx', 0)} · "
                f"errors {classes.get('errors', 0)} · 429s {s.status_429} · retries {s.retries}"
            ),
            Text(
                f"latency p50 {_ms(s.latency_ms['p50'])} · p95 {_ms(s.latency_ms['p95'])} · "
                f"p99 {_ms(s.latency_ms['p99'])}"
            ),
        ]
        waiting = waiting_text(s)
        if waiting:
            lines.append(Text(waiting, style="yellow"))
        return Group(*lines)


class PlainReporter:
    """No live view: optional status lines every few seconds, then the summary."""

    def __init__(self, console: Console, status_lines: bool, rich_summary: bool = False) -> None:
        self._console = console
        self._status_lines = status_lines
        self._rich_summary = rich_summary
        self._next = time.monotonic() + PLAIN_INTERVAL_S
        self._lock = threading.Lock()

    def start(self, total: int | None) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def update(self, snapshot: StatsSnapshot) -> None:
        if not self._status_lines:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PLAIN_INTERVAL_S
            self._console.print("poolfetch: " + status_line(snapshot), soft_wrap=True)

    def finish(self, snapshot: StatsSnapshot, summary: dict[str, Any]) -> None:
        if self._rich_summary:
            self._console.print(summary_table(summary))
        else:
            self._console.print(summary_text(summary), soft_wrap=True)


def summary_text(summary: dict[str, Any]) -> str:
    """The plain summary: one line, plus the top errors when something failed."""
    latency = summary["latency_ms"]
    head = (
        f"poolfetch: {summary['total']} URLs: {summary['ok']} ok, {summary['failed']} failed, "
        f"{summary['skipped']} skipped, {summary['unchanged']} unchanged; "
        f"{summary['requests']} requests, {summary['status_429']} 429s, "
        f"{summary['retries']} retries; {summary['requests_per_s']} req/s; "
        f"{_size(summary['bytes'])}; p50 {_ms(latency['p50'])} p95 {_ms(latency['p95'])} "
        f"p99 {_ms(latency['p99'])}; {summary['elapsed_s']:.1f} s"
    )
    if summary.get("interrupted"):
        head += f"; interrupted by {summary['interrupted']}"
    lines = [head]
    for item in summary["top_errors"][:3]:
        lines.append(f"poolfetch:   {item['count']} × {item['error']}")
    return "\n".join(lines)


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run summary as a rich table (terminal)."""
    table = Table(title="poolfetch summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    latency = summary["latency_ms"]
    waits = ", ".join(f"{k} {v:.1f} s" for k, v in summary["wait_s"].items()) or "none"
    rows = [
        (
            "URLs",
            f"{summary['total']}: {summary['ok']} ok, {summary['failed']} failed, "
            f"{summary['skipped']} skipped, {summary['unchanged']} unchanged",
        ),
        (
            "requests",
            f"{summary['requests']} ({summary['retries']} retries, "
            f"{summary['status_429']} answered 429)",
        ),
        ("by status", ", ".join(f"{k}: {v}" for k, v in summary["by_status"].items()) or "-"),
        ("rate", f"{summary['requests_per_s']} req/s over {summary['elapsed_s']:.1f} s"),
        ("bytes", _size(summary["bytes"])),
        (
            "latency",
            f"p50 {_ms(latency['p50'])} · p95 {_ms(latency['p95'])} · p99 {_ms(latency['p99'])}",
        ),
        ("waited on limits", waits),
    ]
    if summary["top_failing_hosts"]:
        rows.append(
            (
                "top failing hosts",
                ", ".join(f"{h['host']} ({h['failed']})" for h in summary["top_failing_hosts"]),
            )
        )
    for item in summary["top_errors"][:5]:
        rows.append(("error", f"{item['count']} × {item['error']}"))
    if summary.get("interrupted"):
        rows.append(("interrupted", f"by {summary['interrupted']}: run again to resume"))
    for name, value in rows:
        table.add_row(name, value)
    return table
