"""Retry-After as seconds against Retry-After as an HTTP-date: does the form cost anything?

``python bench/retry_after_forms.py [--urls 40] [--repeats 3] [--rate 10]``

For each repeat and each form (alternated, so drift of the machine spreads over both), a fresh
practice server on 127.0.0.1 (``poolfetch serve --rate-limit RATE --retry-after 1|date``, as
the issue measured) and one ``poolfetch run`` of ``--urls`` URLs against it, in its own
process. Prints one line per run and the median time and 429s per form; the ideal time is
``urls / rate`` seconds. The two forms should cost about the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from poolfetch.core.practice import PracticeServer, ServerOptions

FORMS = ("1", "date")


def one_run(form: str, urls: int, rate: float, workdir: Path) -> tuple[float, int, int]:
    """Seconds, 429s and failed URLs of one run against a fresh server."""
    with PracticeServer(ServerOptions(rate_limit=rate, retry_after=form)) as server:
        listing = workdir / "urls.txt"
        listing.write_text("".join(f"{server.url}/fixed?i={i}\n" for i in range(urls)))
        summary = workdir / "summary.json"
        started = time.monotonic()
        command = [sys.executable, "-m", "poolfetch.cli", "run", str(listing), "-q"]
        subprocess.run(
            [*command, "--summary-json", str(summary)],
            stdout=subprocess.DEVNULL,
            check=False,
            timeout=300,
        )
        elapsed = time.monotonic() - started
    data = json.loads(summary.read_text())
    return elapsed, int(data["status_429"]), int(data["failed"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, int, int]]] = {form: [] for form in FORMS}
    with tempfile.TemporaryDirectory(prefix="poolfetch-bench-") as tmp:
        for repeat in range(args.repeats):
            for form in FORMS:
                run = one_run(form, args.urls, args.rate, Path(tmp))
                results[form].append(run)
                print(f"run {repeat + 1} Retry-After {form:>4}: {run[0]:5.1f} s, {run[1]} 429s")
    print(f"\nideal: {args.urls / args.rate:.1f} s ({args.urls} URLs at {args.rate:g}/s)")
    for form, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        throttled = statistics.median(r[1] for r in runs)
        failed = sum(r[2] for r in runs)
        print(
            f"Retry-After {form:>4}: median {seconds:5.1f} s, {throttled:g} 429s "
            f"({failed} URLs failed)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
