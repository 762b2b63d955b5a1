"""The terminal display: a rich live view on stderr and the summary as a rich table.

The only module that imports rich, and only imported when stderr is a terminal: a run under
cron or in a pipeline never pays for rich's import (about a tenth of a second of start-up).
The engine pushes immutable snapshots from its main thread; rich's own refresh thread renders
the latest one, so the display costs the workers nothing.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from poolfetch.cli.progress import eta_text, latency_text, size_text, waiting_text
from poolfetch.core.stats import StatsSnapshot


def terminal_console() -> Console:
    """A console on stderr; markup off: error texts come from servers and are shown as they
    are, never parsed."""
    return Console(stderr=True, force_terminal=True, highlight=False, markup=False)


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
        grid.add_row(bar, Text(f"{s.done}/{total if total else '?'} {percent} ETA {eta_text(s)}"))
        classes = s.classes
        lines: list[RenderableType] = [
            grid,
            Text(
                f"throughput {s.recent_rps:.1f} req/s (5 s) · {s.overall_rps:.1f} overall · "
                f"{size_text(s.recent_bps)}/s · in flight {s.in_flight} · "
                f"workers busy {s.in_flight}/{s.workers}"
                + (
                    f" · worker processes {s.worker_processes}"
                    if s.worker_processes is not None
                    else ""
                )
            ),
            Text(
                f"2xx {classes.get('2xx', 0)} · 3xx {classes.get('3xx', 0)} · "
                f"4xx {classes.get('4xx', 0)} · 5xx {classes.get('5xx', 0)} · "
                f"errors {classes.get('errors', 0)} · 429s {s.status_429} · retries {s.retries}"
            ),
            Text(f"latency {latency_text(s.latency_ms)}"),
        ]
        waiting = waiting_text(s)
        if waiting:
            lines.append(Text(waiting, style="yellow"))
        return Group(*lines)


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
        ("bytes", size_text(summary["bytes"])),
        (
            "latency",
            latency_text(latency),
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
