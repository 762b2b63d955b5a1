"""The ``limit-rate`` scenario: does ``--limit-rate`` hold, and what do large-body features cost?

* ``--limit-rate 1M`` over one 10 MiB body (``/big``): the transfer should take 10 s ± 5 %
  (the record's ``elapsed_ms``, which leaves out process start-up; the wall time is shown too).
* The cost per byte, on N 10 MiB bodies at full speed, 4 workers: bodies discarded, discarded
  with a limiter that never binds (``--limit-rate 100G``: the bucket's bookkeeping alone), saved
  with ``-o --state``, and saved with ``-C -o --state`` (partial files, fsync of each finished
  large body before its rename). CPU seconds per GiB of the poolfetch process, and wall time.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from typing import Any

import report
from clients import poolfetch_command, write_urls
from harness import Harness, RunRecord

RATE = 1024 * 1024
BIG = 10 * 1024 * 1024
WORKERS = 4


def limit_rate(h: Harness, opts: Any) -> dict[str, Any]:
    runs: list[RunRecord] = []
    one = write_urls(h.workdir / "big1.txt", [h.target.big(0)])
    results = h.workdir / "limit.jsonl"
    for repeat in range(opts.repeats):
        extra = ("--limit-rate", "1M", "--results", str(results))
        record, _ = h.measure(
            "limit-rate", "poolfetch", poolfetch_command(one, 1, extra), 1, label="1M",
            repeat=repeat, timeout=120,
        )  # fmt: skip
        lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
        first = json.loads(lines[0]) if lines else {}
        record.extra = {"transfer_s": first.get("elapsed_ms", 0) / 1000}
        runs.append(record)
    n = 10 if opts.quick else 40
    many = write_urls(h.workdir / "big.txt", (h.target.big(i) for i in range(n)))
    variants: list[tuple[str, tuple[str, ...]]] = [
        ("discarded", ()),
        ("discarded, --limit-rate 100G", ("--limit-rate", "100G")),
        ("-o --state", ("-o", "{out}", "--state", "{db}")),
        ("-C -o --state", ("-C", "-o", "{out}", "--state", "{db}")),
    ]
    for repeat in range(opts.repeats):
        for label, extra in variants:
            out, db = h.workdir / f"out-{repeat}", h.workdir / f"state-{repeat}.db"
            args = tuple(a.format(out=out, db=db) for a in extra)
            record, _ = h.measure(
                "limit-rate", "poolfetch", poolfetch_command(many, WORKERS, args), n,
                label=label, repeat=repeat, timeout=300,
            )  # fmt: skip
            record.extra = {"gib": n * BIG / 2**30}
            runs.append(record)
            shutil.rmtree(out, ignore_errors=True)
            for path in (db, db.with_name(db.name + ".lock")):
                path.unlink(missing_ok=True)
    return {"rate": RATE, "body": BIG, "bodies": n, "runs": [asdict(r) for r in runs]}


def render(result: dict[str, Any]) -> list[str]:
    """The scenario's Markdown lines: the paced transfer, then the cost table."""
    runs = result["runs"]
    paced = [r for r in runs if r["label"] == "1M"]
    ideal = result["body"] / result["rate"]
    transfers = [r["extra"]["transfer_s"] for r in paced]
    row = [
        report.spread(transfers, 2),
        f"{min(transfers) / ideal:.3f}–{max(transfers) / ideal:.3f}",
        report.spread((r["wall_s"] for r in paced), 2),
    ]
    lines = [
        f"`--limit-rate 1M` over one {result['body'] // 2**20} MiB body: ideal {ideal:.0f} s.",
        "",
        report.table(["transfer s (record)", "÷ ideal", "wall s (with start-up)"], [row]),
        "",
        f"{result['bodies']} bodies of {result['body'] // 2**20} MiB at full speed, "
        f"{WORKERS} workers:",
        "",
    ]
    rows = []
    costs = [r for r in runs if r["label"] != "1M"]
    for label, group in report.groups(costs, lambda r: r["label"]).items():
        rows.append([
            label,
            report.spread((r["wall_s"] for r in group), 2),
            report.spread((r["cpu_s"] / r["extra"]["gib"] for r in group), 2),
            report.spread((r["server_cpu_s"] for r in group), 2),
        ])  # fmt: skip
    header = ["variant", "wall s", "poolfetch CPU s per GiB", "server CPU s"]
    lines.append(report.table(header, rows))
    return lines
