"""Announced quotas: poolfetch with its defaults against servers that say their limits.

``python bench/quota.py [--urls N] [--limit L] [--window S] [--workers W]`` starts the practice
server as a fixed-window limiter announcing its quota (``X-RateLimit-*``, then the IETF
``RateLimit``/``RateLimit-Policy`` fields; ``--moving`` adds a moving window), fetches N URLs
with ``poolfetch run -w W`` and no rate option, once reading the headers (the default) and once
with ``--no-rate-headers``, and prints per run: the ideal time, the time taken as a ratio of it,
the 429s the server sent, and the URLs ok. About a minute with the defaults.

The ideal: a fixed window of L per S seconds that begins with the first request after the last
one ended takes ``(ceil(N / L) - 1) * S`` for N requests (the first window at once); a moving
window the same, spread. Every request goes to 127.0.0.1; the server runs in this process.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from poolfetch.core.practice import PracticeServer, ServerOptions
from poolfetch.core.practice_limits import ServerLimits

CLI = [sys.executable, "-m", "poolfetch.cli"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=200, help="URLs per run (default 200)")
    parser.add_argument("--limit", type=int, default=20, help="quota per window (default 20)")
    parser.add_argument("--window", type=float, default=1.0, help="window seconds (default 1)")
    parser.add_argument("--workers", type=int, default=16, help="poolfetch -w (default 16)")
    parser.add_argument("--moving", action="store_true", help="also a moving window")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, window: str, dialect: str, *extra: str) -> dict[str, object]:
    limits = ServerLimits(
        window=window,
        window_limit=args.limit,
        window_s=args.window,
        headers=dialect,
        retry_after=True,
    )
    ideal = (math.ceil(args.urls / args.limit) - 1) * args.window
    with tempfile.TemporaryDirectory(prefix="poolfetch-quota-") as tmp:
        work = Path(tmp)
        with PracticeServer(ServerOptions(limits=limits)) as server:
            urls = work / "urls.txt"
            urls.write_text("".join(f"{server.url}/fixed?i={i}\n" for i in range(args.urls)))
            summary = work / "summary.json"
            command = [*CLI, "run", str(urls), "-w", str(args.workers), "-q"]
            command += ["--summary-json", str(summary), *extra]
            started = time.monotonic()
            subprocess.run(command, stdout=subprocess.DEVNULL, check=False, timeout=600)
            elapsed = time.monotonic() - started
            refused = server.stats()["limit_refused"]
        report = json.loads(summary.read_text())
    return {
        "server": f"{window} window, {args.limit}/{args.window:g}s, {dialect}",
        "client": "poolfetch " + (" ".join(extra) or "(defaults)"),
        "ideal_s": round(ideal, 2),
        "time_s": round(elapsed, 2),
        "ratio": round(elapsed / ideal, 2) if ideal else None,
        "refused_429": refused,
        "refused_share": round(refused / max(1, report["requests"]), 3),
        "ok": f"{report['ok']}/{report['total']}",
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cases = [("fixed", "x-ratelimit"), ("fixed", "ietf")]
    if args.moving:
        cases.append(("moving", "x-ratelimit"))
    rows = []
    for window, dialect in cases:
        for extra in ((), ("--no-rate-headers",)):
            row = measure(args, window, dialect, *extra)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    print("| server | client | ideal | time | × ideal | 429s | refused | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['client']} | {r['ideal_s']} s | {r['time_s']} s | "
            f"{r['ratio']} | {r['refused_429']} | {float(str(r['refused_share'])):.1%} | "
            f"{r['ok']} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
