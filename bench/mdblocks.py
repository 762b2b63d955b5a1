"""Render each scenario's result as a Markdown block and splice blocks into a document.

The generated part of ``docs/benchmarks.md`` lies between ``<!-- bench:begin -->`` and
``<!-- bench:end -->``; inside it every block sits between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``. A run replaces the blocks of the scenarios it ran and keeps the others,
so scenarios can be re-measured one at a time; the prose outside the markers is never touched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import https_hosts
import report

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
ORDER = (
    "machine",
    "throughput",
    "large",
    "workers",
    "qps",
    "ratelimited",
    "rss",
    "post",
    "https-hosts",
)
#: A run is reported as disturbed when unrelated CPU use averaged more than this many cores.
DISTURBED_CORES = 0.25
_BLOCK = re.compile(r"<!-- bench:([a-z-]+) -->\n(.*?)<!-- /bench:\1 -->\n", re.S)


def _heading(name: str, result: dict[str, Any]) -> list[str]:
    meta = result["meta"]
    lines = [
        f"### {name}",
        "",
        f"_Measured {meta['started']} against {meta['server']}, {meta['repeats']} repeat(s), "
        f"`{meta['command']}`._",
        "",
    ]
    source = meta.get("source") or {}
    if source:
        changes = " + uncommitted changes in core/ or cli/" if source.get("dirty") else ""
        lines[2] = lines[2][:-2] + (
            f"; poolfetch at commit {source.get('commit')}{changes} "
            f"(source digest {source.get('digest')})._"
        )
    if meta.get("server_note"):
        lines += [f"**{meta['server_note']}**", ""]
    lines += [f"Note: {note}" for note in result.get("notes", [])]
    if result.get("notes"):
        lines.append("")
    if result.get("error"):
        lines += [f"**This scenario failed: {result['error']}**", ""]
    return lines


def render(name: str, result: dict[str, Any]) -> str:
    """One scenario's block body (without the markers)."""
    lines = _heading(name, result)
    runs = result.get("runs", [])
    disturbed = [r for r in runs if r.get("other_cpu_s", 0) > DISTURBED_CORES * r["wall_s"]]
    if disturbed:
        lines += [
            f"Note: during {len(disturbed)} of {len(runs)} runs other processes used more than "
            f"{DISTURBED_CORES} of a core on average (`other_cpu_s` in the JSON); the machine "
            "was shared.",
            "",
        ]
    if any(not r.get("maxrss_exact", True) for r in runs):
        lines += [
            "Note: GNU time was not found, so peak RSS is `ru_maxrss` from `wait4`, an upper "
            "bound that includes the harness's own size at spawn time.",
            "",
        ]
    if name in ("throughput", "large") and runs:
        lines.append(f"{result['urls']:,} URLs, {result['workers']} workers/connections.")
        lines += ["", report.clients_table(runs)]
        if result.get("startup"):
            lines += ["", "Fixed cost of one process fetching one URL (start-up, teardown):", ""]
            lines.append(report.startup_table(result["startup"]))
    elif name == "workers" and runs:
        lines.append(f"{result['urls']:,} URLs of `/small` at each worker count.")
        lines += ["", report.workers_table(runs), "", "![req/s vs workers](bench-workers.png)"]
    elif name == "qps" and runs:
        lines.append(f"{result['seconds']} s worth of `/small` URLs at each rate, burst 1.")
        lines += ["", report.qps_table(runs)]
    elif name == "ratelimited" and runs:
        lines.append(
            f"{result['urls']:,} URLs of `/limited/` (nginx: {result['limit_rate']} r/s, burst "
            f"{result['limit_burst']} nodelay, 429 + `Retry-After: 1`); ideal "
            f"{result['ideal_s']:.0f} s."
        )
        lines += ["", report.ratelimited_table(runs, result["ideal_s"])]
    elif name == "rss" and runs:
        lines.append(
            f"`poolfetch run` with {result['workers']} workers, default options. The last row's "
            "input has one URL in a hundred lines, the rest bad lines (each parsed, admitted and "
            "recorded like any line; exit 1 because they fail): ten million lines in minutes "
            "where ten million fetches take hours."
        )
        lines += ["", report.rss_table(runs)]
    elif name == "https-hosts" and runs:
        lines += https_hosts.render_lines(result)
    elif name == "limit-rate" and runs:
        import large_bodies

        lines += large_bodies.render(result)
    elif name == "post" and runs:
        lines.append(
            f"{result['urls']:,} URLs of `/small`, {result['workers']} workers; the POSTs send a "
            f"{result['body_bytes']}-byte JSON body (`--json @FILE`, or one request object per "
            "line), the three kinds alternated."
        )
        lines += ["", report.post_table(runs)]
    elif result.get("cases") and runs:
        import server_limits

        lines.append(
            f"Each client with {result['workers']} workers (poolfetch: its defaults, no `--qps`); "
            "refused = 429 and 503 answers in the server's log; ideal = the time a client that "
            "knew the limit would take."
        )
        lines += ["", server_limits.table(result)]
    return "\n".join(lines).rstrip() + "\n"


def render_machine(info: dict[str, Any], server: str, note: str) -> str:
    import machine

    text = machine.markdown(info) + f"\n- Benchmark server: {server}\n"
    return text + (f"\n**{note}**\n" if note else "")


def wrap(name: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n{body}<!-- /bench:{name} -->\n"


def update_file(path: Path, blocks: dict[str, str]) -> None:
    """Replace (or add) the given blocks inside the generated section of ``path``."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    section, tail = rest.split(END, 1)
    kept = {m.group(1): m.group(2) for m in _BLOCK.finditer(section)}
    kept.update(blocks)
    names = [n for n in ORDER if n in kept] + [n for n in kept if n not in ORDER]
    body = "\n".join(wrap(name, kept[name]) for name in names)
    path.write_text(f"{head}{BEGIN}\n{body}{END}{tail}", encoding="utf-8")
