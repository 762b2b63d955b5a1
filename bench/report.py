"""Markdown tables from the raw results: median with min-max over the repeats.

One block per scenario, each wrapped in ``<!-- bench:NAME -->`` markers so that
``docs/benchmarks.md`` can be updated one scenario at a time (see ``markdown_file``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

Run = dict[str, Any]


def spread(values: Iterable[float], digits: int = 1) -> str:
    """``median (min-max)``, or just the value when there is one."""
    items = list(values)
    if not items:
        return "–"
    median = statistics.median(items)
    if len(items) == 1 or min(items) == max(items):
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({min(items):,.{digits}f}–{max(items):,.{digits}f})"


def groups(runs: list[Run], key: Callable[[Run], str]) -> dict[str, list[Run]]:
    """Runs grouped by ``key``, in first-seen order."""
    out: dict[str, list[Run]] = {}
    for run in runs:
        out.setdefault(key(run), []).append(run)
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ok(runs: list[Run]) -> str:
    worst = min(runs, key=lambda r: r["ok_urls"])
    text = f"{worst['ok_urls']:,}/{worst['urls']:,}"
    bad = [r for r in runs if r["returncode"] != 0 or r["timed_out"]]
    if bad:
        text += " (exit " + ",".join(str(r["returncode"]) for r in bad) + ")"
    return text


def clients_table(runs: list[Run]) -> str:
    rows = []
    for client, group in groups(runs, lambda r: r["client"]).items():
        rows.append([
            client,
            spread((r["wall_s"] for r in group), 2),
            spread((r["req_per_s"] for r in group), 0),
            spread((r["cpu_s_per_1k"] for r in group), 2),
            spread((r["maxrss_mb"] for r in group), 1),
            spread((r["connections"] for r in group), 0),
            spread((r["time_wait"] for r in group), 0),
            spread((r["server_cpu_s"] / r["urls"] * 1000 for r in group), 2),
            _ok(group),
        ])  # fmt: skip
    header = ["client", "wall s", "req/s", "CPU s / 1k req", "peak RSS MB", "TCP conns",
              "TIME_WAIT left", "server CPU s / 1k req", "URLs ok"]  # fmt: skip
    return table(header, rows)


def startup_table(runs: list[Run]) -> str:
    rows = [[r["client"], f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['maxrss_mb']:.1f}"]
            for r in runs]  # fmt: skip
    return table(["client", "wall s (1 URL)", "CPU s", "peak RSS MB"], rows)


def workers_table(runs: list[Run]) -> str:
    by_count = groups(runs, lambda r: r["label"])
    rows = []
    for count, group in by_count.items():
        pf = [r for r in group if r["client"] == "poolfetch"]
        ref = [r for r in group if r["client"] == "reference"]
        ratio = statistics.median(r["req_per_s"] for r in pf) / statistics.median(
            r["req_per_s"] for r in ref
        )
        rows.append([
            count,
            spread((r["req_per_s"] for r in pf), 0),
            spread((r["req_per_s"] for r in ref), 0),
            f"{ratio:.2f}",
            spread((r["cpu_s_per_1k"] for r in pf), 2),
            spread((r["cpu_s_per_1k"] for r in ref), 2),
            spread((r["connections"] for r in pf), 0),
            spread((r["maxrss_mb"] for r in pf), 1),
        ])  # fmt: skip
    header = ["workers", "poolfetch req/s", "reference req/s", "poolfetch / reference",
              "poolfetch CPU s / 1k", "reference CPU s / 1k", "poolfetch TCP conns",
              "poolfetch peak RSS MB"]  # fmt: skip
    return table(header, rows)


def qps_table(runs: list[Run]) -> str:
    rows = []
    for rate, group in groups(runs, lambda r: r["label"]).items():
        extra = [r["extra"] for r in group]
        rows.append([
            f"--qps {rate}",
            f"{group[0]['urls']:,}",
            spread((r["wall_s"] for r in group), 2),
            f"{extra[0]['ideal_s']:.2f}",
            spread((e["mean_rate"] for e in extra), 2),
            spread((e["max_1s"] for e in extra), 0) + f" (≤ {extra[0]['bound_1s']:.0f})",
            spread((e["max_100ms"] for e in extra), 0) + f" (≤ {extra[0]['bound_100ms']:.0f})",
            spread((e["first_1s"] for e in extra), 0),
            _ok(group),
        ])  # fmt: skip
    header = ["limit", "URLs", "wall s", "ideal s", "mean rate /s", "max in any 1 s (bound)",
              "max in any 0.1 s (bound)", "first second", "URLs ok"]  # fmt: skip
    return table(header, rows)


def ratelimited_table(runs: list[Run], ideal: float) -> str:
    rows = []
    for client, group in groups(runs, lambda r: r["client"]).items():
        own = [r["extra"].get("poolfetch_summary") for r in group]
        own_429 = spread((o["status_429"] for o in own if o), 0) if any(own) else "–"
        rows.append([
            client,
            spread((r["wall_s"] for r in group), 1),
            f"{statistics.median(r['wall_s'] for r in group) / ideal:.2f}×",
            spread((r["requests"] for r in group), 0),
            spread((r["extra"]["status_429"] for r in group), 0),
            own_429,
            spread((r["extra"]["max_1s"] for r in group), 0),
            _ok(group),
        ])  # fmt: skip
    header = ["client", "wall s", "÷ ideal", "requests sent", "429 answers (server log)",
              "429s poolfetch counted", "max in any 1 s", "URLs ok"]  # fmt: skip
    return table(header, rows)


def rss_table(runs: list[Run]) -> str:
    rows = [[f"{r['extra'].get('input_lines', r['urls']):,}", f"{r['urls']:,}",
             f"{r['wall_s']:.1f}", f"{r['req_per_s']:.0f}", f"{r['maxrss_mb']:.1f}",
             f"{r['cpu_s_per_1k']:.2f}", _ok([r])]
            for r in runs]  # fmt: skip
    header = ["input lines", "URLs fetched", "wall s", "req/s", "peak RSS MB", "CPU s / 1k req",
              "URLs ok"]  # fmt: skip
    return table(header, rows)


def post_table(runs: list[Run]) -> str:
    """GET against POST runs: CPU per request and its ratio to the GET's, by the median run and
    by the best (least CPU) run of each kind: on a shared machine other processes inflate a
    run's CPU time, and the best run is the one least disturbed."""
    by_client = groups(runs, lambda r: r["client"])
    get = by_client.get("GET", runs)
    median_base = statistics.median(r["cpu_s_per_1k"] for r in get)
    best_base = min(r["cpu_s_per_1k"] for r in get)
    rows = []
    for client, group in by_client.items():
        median = statistics.median(r["cpu_s_per_1k"] for r in group)
        best = min(r["cpu_s_per_1k"] for r in group)
        rows.append([
            client,
            spread((r["wall_s"] for r in group), 2),
            spread((r["req_per_s"] for r in group), 0),
            spread((r["cpu_s_per_1k"] for r in group), 3),
            f"{median / median_base:.3f}" if median_base > 0 else "–",
            f"{best / best_base:.3f}" if best_base > 0 else "–",
            spread((r["connections"] for r in group), 0),
            _ok(group),
        ])  # fmt: skip
    header = ["requests", "wall s", "req/s", "CPU s / 1k req", "CPU ÷ GET's (medians)",
              "CPU ÷ GET's (best runs)", "TCP conns", "URLs ok"]  # fmt: skip
    return table(header, rows)
