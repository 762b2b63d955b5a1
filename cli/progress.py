"""The displays: a rich live view on a terminal (``live.py``), plain lines elsewhere.

Without a terminal nothing has ANSI escapes and rich is not even imported: cron gets one
summary line on stderr (or nothing with -q), ``--progress`` adds a status line every few
seconds.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from poolfetch.core.report import NullReporter, Reporter
from poolfetch.core.stats import StatsSnapshot

if TYPE_CHECKING:
    from rich.console import Console

PLAIN_INTERVAL_S = 5.0
_WAIT_REASONS = {
    "global": "global --qps",
    "host-rate": "per-host rate",
    "paused": "Retry-After pause",
    "connections": "per-host connections",
    "quota": "announced quota",
}


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


def choose_reporter(progress: bool | None, quiet: bool) -> Reporter:
    """The display for this run: ``-q`` nothing; live on a terminal; plain lines otherwise."""
    if quiet:
        return NullReporter()
    terminal = stderr_is_terminal()
    show_progress = terminal if progress is None else progress
    if terminal:
        from poolfetch.cli.live import LiveReporter, terminal_console

        console = terminal_console()
        if show_progress:
            return LiveReporter(console)
        return PlainReporter(status_lines=False, console=console)
    return PlainReporter(status_lines=show_progress)


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def latency_text(latency: dict[str, float | None], sep: str = " · ") -> str:
    """``p50 1.2 ms · p95 3.4 ms · p99 9.8 ms`` from a latency dict of the stats."""
    return sep.join(f"{key} {ms_text(latency[key])}" for key in ("p50", "p95", "p99"))


def eta_text(s: StatsSnapshot) -> str:
    if not s.total or s.done == 0 or s.elapsed <= 0:
        return "-"
    remaining = max(0, s.total - s.done) * s.elapsed / s.done
    return time.strftime("%H:%M:%S", time.gmtime(remaining))


def status_line(s: StatsSnapshot) -> str:
    """One plain line of progress (also the headline of the live view)."""
    total = f"/{s.total}" if s.total is not None else ""
    line = (
        f"{s.done}{total} done, {s.ok} ok, {s.failed} failed; "
        f"{s.recent_rps:.1f} req/s now, {s.overall_rps:.1f} overall, "
        f"{size_text(s.recent_bps)}/s; in flight {s.in_flight}/{s.workers}; "
        f"429s {s.status_429}, retries {s.retries}"
    )
    if s.worker_processes is not None:
        line += f"; worker processes {s.worker_processes}"
    return line


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
    if s.concurrency:
        shown = ", ".join(f"{h} {n} at once" for h, n in sorted(s.concurrency)[:3])
        more = f" +{len(s.concurrency) - 3}" if len(s.concurrency) > 3 else ""
        parts.append(f"in-flight limit: {shown}{more}")
    return " · ".join(parts)


def learned_text(hosts: list[dict[str, Any]]) -> str:
    """The summary's busiest hosts with what the adaptive limits learned for them."""
    shown = []
    for item in hosts:
        learned = []
        if item.get("rate") is not None:
            learned.append(f"{item['rate']:g}/s")
        if item.get("concurrency") is not None:
            learned.append(f"{item['concurrency']} at once")
        if learned:
            shown.append(f"{item['host']} ({', '.join(learned)})")
    return ", ".join(shown)


class PlainReporter:
    """No live view: optional status lines every few seconds, then the summary.

    Without a ``console`` (no terminal) it writes plain text to stderr; with one (a terminal
    and ``--no-progress``) the summary is a rich table.
    """

    def __init__(self, status_lines: bool, console: Console | None = None) -> None:
        self._console = console
        self._status_lines = status_lines
        self._next = time.monotonic() + PLAIN_INTERVAL_S

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
            self._write("poolfetch: " + status_line(snapshot))

    def finish(self, snapshot: StatsSnapshot, summary: dict[str, Any]) -> None:
        if self._console is not None:
            from poolfetch.cli.live import summary_table

            self._console.print(summary_table(summary))
        else:
            self._write(summary_text(summary))

    def _write(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)


def _counted(count: int, one: str, many: str | None = None) -> str:
    """``1 URL``, ``2 URLs``, ``1 retry``, ``0 retries``."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def summary_text(summary: dict[str, Any]) -> str:
    """The plain summary: one line, plus the top errors when something failed."""
    latency = summary["latency_ms"]
    head = (
        f"poolfetch: {_counted(summary['total'], 'URL')}: {summary['ok']} ok, "
        f"{summary['failed']} failed, {summary['skipped']} skipped, "
        f"{summary['unchanged']} unchanged; {_counted(summary['requests'], 'request')}, "
        f"{_counted(summary['status_429'], '429')}, "
        f"{_counted(summary['retries'], 'retry', 'retries')}; {summary['requests_per_s']} req/s; "
        f"{size_text(summary['bytes'])}; {latency_text(latency, ' ')}; "
        f"{summary['elapsed_s']:.1f} s"
    )
    if summary.get("interrupted"):
        head += f"; interrupted by {summary['interrupted']}"
    lines = [head]
    learned = learned_text(summary.get("hosts", []))
    if learned:
        lines.append(f"poolfetch:   limits learned: {learned}")
    for item in summary["top_errors"][:3]:
        lines.append(f"poolfetch:   {item['count']} × {item['error']}")
    return "\n".join(lines)
